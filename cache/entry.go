package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

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
	// with and was checked against by Lookup; zero and "" for an entry made
	// by the shell template, which records neither.
	RootfsSize   int64
	RootfsSHA256 string
}

// Rootfs is the path of the entry's rootfs tarball.
func (e *Entry) Rootfs() string {
	return filepath.Join(e.Dir, rootfsName)
}

// Meta gives access to the entry's meta files, resolved for mode (SPEC 5).
func (e *Entry) Meta(mode compat.Mode) compat.Meta {
	return compat.Meta{Dir: e.Dir, Mode: mode}
}

// Expired reports whether the entry must not be used without asking the
// server: its relevant expiry is in the past, or it was fetched MaxAge ago or
// more.
func (e *Entry) Expired(now time.Time, mode compat.Mode) (bool, error) {
	if now.Sub(e.Fetched) >= MaxAge {
		return true, nil
	}
	exp, ok, err := e.Meta(mode).Expiry()
	if err != nil {
		return false, err
	}
	return ok && exp.Before(now), nil
}

// record is the content of recordName.
type record struct {
	Format int    `json:"format"`
	Build  string `json:"build"`
	Rootfs struct {
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	} `json:"rootfs"`
}

// recordFormat is the version of record this package writes and reads.
const recordFormat = 1

// maxRecordSize bounds what is read of a record file; a real one is about
// 150 bytes.
const maxRecordSize = 64 << 10

// parseRecord reads and checks a record file's content.
func parseRecord(b []byte) (record, error) {
	var r record
	if len(b) > maxRecordSize {
		return r, fmt.Errorf("record is %d bytes, more than %d", len(b), maxRecordSize)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("record is not valid: %w", err)
	}
	if r.Format != recordFormat {
		return r, fmt.Errorf("record has format %d, want %d", r.Format, recordFormat)
	}
	if r.Rootfs.Size < 0 {
		return r, fmt.Errorf("record has a negative size %d", r.Rootfs.Size)
	}
	if s, err := hex.DecodeString(r.Rootfs.SHA256); err != nil || len(s) != sha256.Size || strings.ToLower(r.Rootfs.SHA256) != r.Rootfs.SHA256 {
		return r, fmt.Errorf("record has a malformed SHA256 %q", r.Rootfs.SHA256)
	}
	return r, nil
}

func (r record) marshal() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // a struct of strings and ints always marshals
	}
	return append(b, '\n')
}

// openEntry reads the entry in dir. why is set, and the entry nil, when the
// entry is damaged or incomplete; err is for failures to read it at all.
func openEntry(dir string) (e *Entry, why string, err error) {
	b, err := os.ReadFile(filepath.Join(dir, buildIDName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "it has no build_id (it was not completely stored)", nil
	}
	if err != nil {
		return nil, "", err
	}
	fi, err := os.Stat(filepath.Join(dir, buildIDName))
	if err != nil {
		return nil, "", err
	}
	// The shell compares $(cat build_id), which drops trailing newlines.
	e = &Entry{Dir: dir, BuildID: strings.TrimRight(string(b), "\n"), Fetched: fi.ModTime()}

	rootfs, err := os.Open(e.Rootfs())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, rootfsName + " is missing", nil
	}
	if err != nil {
		return nil, "", err
	}
	defer rootfs.Close()
	rfi, err := rootfs.Stat()
	if err != nil {
		return nil, "", err
	}
	if !rfi.Mode().IsRegular() {
		return nil, rootfsName + " is not a regular file", nil
	}

	b, err = readLimited(filepath.Join(dir, recordName), maxRecordSize)
	if errors.Is(err, fs.ErrNotExist) {
		return e, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	rec, err := parseRecord(b)
	if err != nil {
		return nil, fmt.Sprintf("its %s file is damaged: %v", recordName, err), nil
	}
	if rfi.Size() != rec.Rootfs.Size {
		return nil, fmt.Sprintf("%s is %d bytes, but was stored with %d", rootfsName, rfi.Size(), rec.Rootfs.Size), nil
	}
	sum, err := hashFile(rootfs)
	if err != nil {
		return nil, "", fmt.Errorf("check %s: %w", e.Rootfs(), err)
	}
	if sum != rec.Rootfs.SHA256 {
		return nil, fmt.Sprintf("%s does not match the SHA256 recorded when it was stored", rootfsName), nil
	}
	e.RootfsSize, e.RootfsSHA256 = rec.Rootfs.Size, rec.Rootfs.SHA256
	return e, "", nil
}

// readLimited reads a file of at most limit bytes, or limit+1 bytes of it
// when it is larger (so the caller sees it is too large).
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit+1))
}

// hashFile returns the hex SHA256 of what f holds from its start.
func hashFile(f *os.File) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<62)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
