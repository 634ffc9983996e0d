package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc/lxc-download/cache/xzpar"
	"github.com/lxc/lxc-download/compat"
)

// MaxAge is how long a cached image is used at most, counted from when it
// was downloaded, whatever the image's own expiry says.
const MaxAge = 30 * 24 * time.Hour

// The files of an entry this package reads or writes itself; every other
// file in it comes from the image's meta tarball.
const (
	rootfsName  = "rootfs.tar.xz"
	metaName    = "meta.tar.xz"
	buildIDName = "build_id"
	// recordName holds what the entry was stored with. The shell template
	// neither writes nor reads it, and removes it with the entry.
	recordName = ".lxc-download"
)

// Trust is the material an image was verified with when it was
// downloaded, kept in the entry's record so that the caller can verify the
// entry again on every use: the cache itself checks no signature (that is
// package fetch's job), it keeps what the caller gave and hands it back.
type Trust struct {
	// Verified is false for an image stored without verification (a
	// --no-validate download); such an entry must not serve a run that
	// validates.
	Verified bool `json:"verified"`
	// Keys are the fingerprints of the keyring the image was verified
	// against (hex).
	Keys []string `json:"keys,omitempty"`
	// SHA256SUMS is the server's checksum list for the image's directory
	// and SHA256SUMSSig its detached signature (SHA256SUMS.asc), where the
	// server publishes them.
	SHA256SUMS    []byte `json:"sha256sums,omitempty"`
	SHA256SUMSSig []byte `json:"sha256sums_asc,omitempty"`
	// Signatures are the files' own detached signatures (FILE.asc), by
	// file name ("rootfs.tar.xz", "meta.tar.xz"), where the server
	// publishes them.
	Signatures map[string][]byte `json:"signatures,omitempty"`
}

// maxTrustSize bounds the trust material of one entry: a SHA256SUMS of an
// image directory and a few signatures are a few kilobytes.
const maxTrustSize = 1 << 20

// check refuses trust material that cannot be used to verify an entry
// again.
func (t Trust) check() error {
	size := len(t.SHA256SUMS) + len(t.SHA256SUMSSig)
	for name, sig := range t.Signatures {
		if name != rootfsName && name != metaName {
			return fmt.Errorf("signature of %q: not a file of the entry", name)
		}
		if len(sig) == 0 {
			return fmt.Errorf("signature of %s is empty", name)
		}
		size += len(sig)
	}
	for _, k := range t.Keys {
		size += len(k)
		if k == "" || strings.Trim(strings.ToLower(k), "0123456789abcdef") != "" {
			return fmt.Errorf("key fingerprint %q is not hex", k)
		}
	}
	if size > maxTrustSize {
		return fmt.Errorf("trust material is %d bytes, more than %d", size, maxTrustSize)
	}
	if (len(t.SHA256SUMS) == 0) != (len(t.SHA256SUMSSig) == 0) && t.Verified {
		return errors.New("SHA256SUMS and its signature come together")
	}
	if !t.Verified {
		return nil
	}
	if len(t.Keys) == 0 {
		return errors.New("verified, but against no key")
	}
	if len(t.SHA256SUMS) == 0 && (len(t.Signatures[rootfsName]) == 0 || len(t.Signatures[metaName]) == 0) {
		return errors.New("verified, but with neither a signed SHA256SUMS nor signatures of both files")
	}
	return nil
}

// Entry is one cached image.
type Entry struct {
	// Dir is the entry's directory.
	Dir string
	// BuildID is the build the entry holds, as the index names it.
	BuildID string
	// Fetched is when the image was downloaded: the time build_id was
	// written (the shell template writes it then too).
	Fetched time.Time
	// RootfsSize and RootfsSHA256 (hex) are what rootfs.tar.xz was stored
	// with; OpenRootfs checks the tarball against them as it is read.
	RootfsSize   int64
	RootfsSHA256 string
	// MetaSize and MetaSHA256 (hex) are those of meta.tar.xz, which
	// Lookup checked.
	MetaSize   int64
	MetaSHA256 string
	// Trust is what the image was verified with when it was downloaded.
	Trust Trust

	meta      []byte                   // meta.tar.xz
	metaFiles compat.MetaFiles         // its files
	open      func() (storeDir, error) // opens Dir again, checked
	unpacked  *unpackedRecord          // the record's word on the unpacked copy
}

// Rootfs is the path of the entry's rootfs tarball. Read it through
// OpenRootfs, which checks it.
func (e *Entry) Rootfs() string {
	return filepath.Join(e.Dir, rootfsName)
}

// MetaTarball returns the bytes of the entry's meta.tar.xz, as stored and
// checked against the record by Lookup: the caller verifies them against
// Trust and reads the meta files from them (MetaFiles), not from the loose
// copies in Dir, which are kept for the shell template only.
func (e *Entry) MetaTarball() []byte { return e.meta }

// MetaFiles returns the files of the entry's meta tarball. Use
// MetaFiles.Relevant to pick the one for a mode (SPEC 5).
func (e *Entry) MetaFiles() compat.MetaFiles { return e.metaFiles }

// Meta gives access to the loose copies of the meta files in Dir, resolved
// for mode (SPEC 5).
//
// Deprecated: they are kept for the shell template's sake and not
// covered by the record; use MetaFiles.
func (e *Entry) Meta(mode compat.Mode) compat.Meta {
	return compat.Meta{Dir: e.Dir, Mode: mode}
}

// Stale reports whether the entry was fetched MaxAge ago or more: it must
// then be downloaded again even when the server still offers its build.
func (e *Entry) Stale(now time.Time) bool {
	return now.Sub(e.Fetched) >= MaxAge
}

// UpToDate reports whether the entry can stand for build, the build the
// server offers now: the same build, and not Stale.
func (e *Entry) UpToDate(build string, now time.Time) bool {
	return e.BuildID == build && !e.Stale(now)
}

// Expired reports whether the entry must not be used without asking the
// server: its relevant expiry (from the meta tarball) is in the past, or it
// is Stale.
func (e *Entry) Expired(now time.Time, mode compat.Mode) (bool, error) {
	if e.Stale(now) {
		return true, nil
	}
	data, ok := e.metaFiles.Relevant("expiry", mode)
	if !ok {
		return false, nil
	}
	exp, err := compat.ParseExpiry(data)
	if err != nil {
		return false, fmt.Errorf("cached image %s: %w", e.Dir, err)
	}
	return exp.Before(now), nil
}

// ErrMismatch is the error of a cached file that is not what its record
// says it was stored as: damaged, or tampered with.
var ErrMismatch = errors.New("does not match what was stored")

// OpenRootfs opens the entry's rootfs tarball for reading from its start.
// The reader hashes what it hands out, and instead of io.EOF its Read
// returns an error that errors.Is finds ErrMismatch in when the bytes were
// not the size and SHA256 recorded: so the caller reads the tarball once,
// for unpacking, and must treat anything unpacked from it as unverified
// until Read has said io.EOF. Call it with the entry's lock held; the
// reader stays valid after the lock is released or the entry replaced.
func (e *Entry) OpenRootfs() (*RootfsReader, error) {
	if e.open == nil {
		return nil, errors.New("open cached rootfs: the entry was not looked up")
	}
	d, err := e.open()
	if err != nil {
		return nil, fmt.Errorf("open cached rootfs: %w", err)
	}
	defer d.close()
	f, st, err := openFileAt(d.fd, rootfsName)
	if err != nil {
		return nil, fmt.Errorf("open cached rootfs: %s: %w", d.join(rootfsName), err)
	}
	if st.Size != e.RootfsSize {
		f.Close()
		return nil, fmt.Errorf("cached rootfs %s is %d bytes, but was stored with %d: %w", d.join(rootfsName), st.Size, e.RootfsSize, ErrMismatch)
	}
	return &RootfsReader{f: f, path: d.join(rootfsName), h: sha256.New(), size: e.RootfsSize, want: e.RootfsSHA256}, nil
}

// RootfsReader reads a cached rootfs tarball and checks it against the
// entry's record as it goes (see Entry.OpenRootfs).
type RootfsReader struct {
	f       *os.File
	path    string
	h       hash.Hash
	n, size int64
	want    string
	err     error
}

// Size is the tarball's recorded size, for progress.
func (r *RootfsReader) Size() int64 { return r.size }

// Unpacked is the size of the tar the tarball holds, from its xz index (a
// few reads at its end, apart from the sequential read): what unpacking
// it needs on disk, near enough, for a check of the free space before it.
func (r *RootfsReader) Unpacked() (int64, error) {
	info, err := xzpar.Stat(r.f, r.size)
	if err != nil {
		return 0, fmt.Errorf("cached rootfs %s: %w", r.path, err)
	}
	return info.Size, nil
}

// Read implements io.Reader.
func (r *RootfsReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.f.Read(p)
	if int64(n) > r.size-r.n {
		r.err = fmt.Errorf("cached rootfs %s has grown beyond the %d bytes it was stored with: %w", r.path, r.size, ErrMismatch)
		return 0, r.err
	}
	r.h.Write(p[:n])
	r.n += int64(n)
	if err == io.EOF {
		if r.n != r.size {
			r.err = fmt.Errorf("cached rootfs %s ended after %d bytes, but was stored with %d: %w", r.path, r.n, r.size, ErrMismatch)
		} else if sum := hex.EncodeToString(r.h.Sum(nil)); sum != r.want {
			r.err = fmt.Errorf("cached rootfs %s does not match the SHA256 recorded when it was stored (damaged or tampered with): %w", r.path, ErrMismatch)
		} else {
			r.err = io.EOF
		}
		return n, r.err
	}
	if err != nil {
		r.err = fmt.Errorf("read cached rootfs %s: %w", r.path, err)
		return n, r.err
	}
	return n, nil
}

// Close closes the tarball.
func (r *RootfsReader) Close() error { return r.f.Close() }

// record is the content of recordName.
type record struct {
	Format int     `json:"format"`
	Build  string  `json:"build"`
	Rootfs fileSum `json:"rootfs"`
	Meta   fileSum `json:"meta"`
	Trust  Trust   `json:"trust"`
	// Unpacked names the entry's unpacked copy, if it has one (see
	// unpacked.go). Older versions ignore it, and keep no copy.
	Unpacked *unpackedRecord `json:"unpacked,omitempty"`
}

// fileSum is a file's size and SHA256 (lower-case hex).
type fileSum struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

func (s fileSum) check(name string) error {
	if s.Size < 0 {
		return fmt.Errorf("record has a negative size %d for %s", s.Size, name)
	}
	if b, err := hex.DecodeString(s.SHA256); err != nil || len(b) != sha256.Size || strings.ToLower(s.SHA256) != s.SHA256 {
		return fmt.Errorf("record has a malformed SHA256 %q for %s", s.SHA256, name)
	}
	return nil
}

// recordFormat is the version of record this package writes and reads.
// Format 1 (without the meta tarball and the trust material) is refused:
// such an entry cannot be verified again.
const recordFormat = 2

// maxRecordSize bounds what is read of a record file: the trust material
// and its JSON encoding.
const maxRecordSize = 2*maxTrustSize + 64<<10

// parseRecord reads and checks a record file's content.
func parseRecord(b []byte) (record, error) {
	var r record
	if len(b) > maxRecordSize {
		return r, fmt.Errorf("record is %d bytes, more than %d", len(b), maxRecordSize)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("record is not valid: %w", err)
	}
	if r.Format == 1 {
		return r, errors.New("record was written by an older lxc-download and lacks what the image was verified with")
	}
	if r.Format != recordFormat {
		return r, fmt.Errorf("record has format %d, want %d", r.Format, recordFormat)
	}
	if r.Build == "" || strings.ContainsAny(r.Build, "\n\x00") {
		return r, fmt.Errorf("record has an invalid build %q", r.Build)
	}
	if err := r.Rootfs.check(rootfsName); err != nil {
		return r, err
	}
	if err := r.Meta.check(metaName); err != nil {
		return r, err
	}
	if err := r.Trust.check(); err != nil {
		return r, fmt.Errorf("record: %w", err)
	}
	if r.Unpacked != nil {
		if err := r.Unpacked.Manifest.check("the unpacked copy's manifest"); err != nil {
			return r, err
		}
	}
	return r, nil
}

func (r record) marshal() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // strings, ints, byte slices and maps of them always marshal
	}
	return append(b, '\n')
}

// readEntry reads the entry in d. why is set, and the entry nil, when the
// entry is damaged, incomplete, has no usable record, or a file of it is
// not trusted; err is for failures to read it at all.
func readEntry(d storeDir, t trust) (e *Entry, why string, err error) {
	// fileWhy says what is wrong with a file of the entry, or "" when it
	// is a regular file of a trusted owner that others cannot write.
	fileWhy := func(name string, st *unix.Stat_t, err error) (string, error) {
		switch {
		case err == nil:
			if terr := t.check(st, d.join(name)); terr != nil {
				return "its " + name + " " + terr.(*UntrustedError).Reason, nil
			}
			return "", nil
		case err == unix.ENOENT:
			return name + " is missing", nil
		case err == errNotRegular || err == unix.ELOOP:
			return name + " is not a regular file but " + kindAt(d.fd, name), nil
		}
		return "", &os.PathError{Op: "read", Path: d.join(name), Err: err}
	}

	b, st, err := readAllAt(d.fd, buildIDName, 4096)
	if err == unix.ENOENT {
		return nil, "it has no build_id (it was not completely stored)", nil
	}
	if why, err := fileWhy(buildIDName, &st, err); why != "" || err != nil {
		return nil, why, err
	}
	// The shell compares $(cat build_id), which drops trailing newlines.
	e = &Entry{Dir: d.path, BuildID: strings.TrimRight(string(b), "\n"), Fetched: time.Unix(st.Mtim.Unix())}

	b, st, err = readAllAt(d.fd, recordName, maxRecordSize)
	if err == unix.ENOENT {
		return nil, "it has no record of what it was verified with (the shell template or an older lxc-download stored it)", nil
	}
	if why, err := fileWhy(recordName, &st, err); why != "" || err != nil {
		return nil, why, err
	}
	rec, err := parseRecord(b)
	if err != nil {
		return nil, fmt.Sprintf("its %s file is damaged: %v", recordName, err), nil
	}
	if rec.Build != e.BuildID {
		return nil, fmt.Sprintf("its build_id says %q, but it was stored as build %q", e.BuildID, rec.Build), nil
	}

	f, st, err := openFileAt(d.fd, rootfsName)
	if err == nil {
		f.Close()
	}
	if why, err := fileWhy(rootfsName, &st, err); why != "" || err != nil {
		return nil, why, err
	}
	if st.Size != rec.Rootfs.Size {
		return nil, fmt.Sprintf("%s is %d bytes, but was stored with %d", rootfsName, st.Size, rec.Rootfs.Size), nil
	}

	meta, st, err := readAllAt(d.fd, metaName, compat.MaxMetaCompressed)
	if why, err := fileWhy(metaName, &st, err); why != "" || err != nil {
		return nil, why, err
	}
	if sum := sha256.Sum256(meta); int64(len(meta)) != rec.Meta.Size || hex.EncodeToString(sum[:]) != rec.Meta.SHA256 {
		return nil, fmt.Sprintf("%s does not match the size and SHA256 recorded when it was stored", metaName), nil
	}
	files, err := compat.ReadMetaTarball(bytes.NewReader(meta))
	if err != nil {
		return nil, fmt.Sprintf("%s cannot be read: %v", metaName, err), nil
	}
	e.RootfsSize, e.RootfsSHA256 = rec.Rootfs.Size, rec.Rootfs.SHA256
	e.MetaSize, e.MetaSHA256 = rec.Meta.Size, rec.Meta.SHA256
	e.Trust = rec.Trust
	e.unpacked = rec.Unpacked
	e.meta, e.metaFiles = meta, files
	return e, "", nil
}
