package compat

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lxc/lxc-download/cache/xzpar"
)

// Limits on a meta tarball, which comes from the network. A real one is a
// few kilobytes: a dozen config variants, create-message, expiry,
// excludes-user and templates.
const (
	// MaxMetaCompressed is the most bytes of meta.tar.xz itself.
	MaxMetaCompressed = 4 << 20
	// MaxMetaTar is the most bytes of the tar stream inside it, headers
	// and padding included.
	MaxMetaTar = 8 << 20
	// MaxMetaFiles is the most files it may hold.
	MaxMetaFiles = 256
	// MaxMetaFileSize is the most bytes of each file.
	MaxMetaFileSize = 1 << 20
	// MaxMetaTotal is the most bytes of all files together.
	MaxMetaTotal = 4 << 20
)

// metaMemoryBudget bounds the memory decoding the xz data takes: a block's
// output and compressed data, which MaxMetaTar and MaxMetaCompressed bound
// (a larger dictionary than the data is never allocated).
const metaMemoryBudget = MaxMetaTar + MaxMetaCompressed

// xzMagic starts every xz file.
var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}

// errNotXZ is the error for data that does not start like xz.
var errNotXZ = errors.New("not xz data")

// ErrNoConfig is the error for a meta tarball without the configuration
// file the mode needs; its text is the shell template's message.
var ErrNoConfig = errors.New("meta tarball is missing the configuration file")

// MetaFiles are the files of a meta tarball by name ("config",
// "config-user.7", "expiry", ...).
type MetaFiles map[string][]byte

// ReadMetaTarball reads meta.tar.xz from r and returns its files.
//
// It accepts the shape image builders make (distrobuilder runs tar -C DIR
// with the file names, older tools tar -C DIR .): regular files at the
// root, named "NAME" or "./NAME", optionally with a "./" directory entry.
// Anything else, a subdirectory, a link, a device, a name with a slash or a
// control character, a duplicate, is refused, as is input over any of the
// Max* limits; each error says which ("meta tarball: ..."). Input that is
// not xz, is truncated or fails its checksums is an error that says xz.
func ReadMetaTarball(r io.Reader) (MetaFiles, error) {
	// Read it whole first: it is small, and the xz structure can then be
	// checked, and the size of its content, before anything is decoded.
	compressed, err := io.ReadAll(io.LimitReader(r, MaxMetaCompressed+1))
	if err != nil {
		return nil, fmt.Errorf("meta tarball: read: %w", err)
	}
	if len(compressed) > MaxMetaCompressed {
		return nil, fmt.Errorf("meta tarball: more than %d bytes compressed", MaxMetaCompressed)
	}
	if !bytes.HasPrefix(compressed, xzMagic) {
		return nil, fmt.Errorf("meta tarball: %w", errNotXZ)
	}
	// The same decoder as the rootfs's, as strict as xz: the network
	// gets no looser parser for the small file.
	ra := bytes.NewReader(compressed)
	info, err := xzpar.Stat(ra, int64(len(compressed)))
	if err != nil {
		return nil, fmt.Errorf("meta tarball: %w", xzError{err})
	}
	if info.Size > MaxMetaTar {
		return nil, fmt.Errorf("meta tarball: more than %d bytes uncompressed", MaxMetaTar)
	}
	dec, err := xzpar.NewReader(ra, int64(len(compressed)), xzpar.Options{Workers: 1, MemoryBudget: metaMemoryBudget})
	if err != nil {
		return nil, fmt.Errorf("meta tarball: %w", xzError{err})
	}
	defer dec.Close()
	return readMetaEntries(&limitedXZ{r: dec, left: MaxMetaTar})
}

// readMetaEntries reads the files of a meta tarball from its tar stream,
// with the rules and limits of ReadMetaTarball, and then the stream to its
// end, so that a decompressor's checks are made too.
func readMetaEntries(stream io.Reader) (MetaFiles, error) {
	tr := tar.NewReader(stream)
	files := MetaFiles{}
	total := int64(0)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("meta tarball: %w", err)
		}
		name, skip, err := metaEntryName(hdr)
		if err != nil {
			return nil, fmt.Errorf("meta tarball: %w", err)
		}
		if skip {
			continue
		}
		if _, dup := files[name]; dup {
			return nil, fmt.Errorf("meta tarball: %q is in it twice", name)
		}
		if len(files) == MaxMetaFiles {
			return nil, fmt.Errorf("meta tarball: more than %d files", MaxMetaFiles)
		}
		if hdr.Size > MaxMetaFileSize {
			return nil, fmt.Errorf("meta tarball: %q is %d bytes, more than the limit of %d", name, hdr.Size, MaxMetaFileSize)
		}
		if total += hdr.Size; total > MaxMetaTotal {
			return nil, fmt.Errorf("meta tarball: its files are more than %d bytes together", MaxMetaTotal)
		}
		data := make([]byte, hdr.Size)
		if _, err := io.ReadFull(tr, data); err != nil {
			return nil, fmt.Errorf("meta tarball: read %s: %w", name, err)
		}
		files[name] = data
	}
	// Read the stream to its end, so the decompressor's index and
	// checksums are checked too: tar stops at its end marker.
	if _, err := io.Copy(io.Discard, stream); err != nil {
		return nil, fmt.Errorf("meta tarball: %w", err)
	}
	return files, nil
}

// metaEntryName checks a meta tarball entry and returns the file name it
// stands for; skip is true for entries that hold no file (the root
// directory, a pax global header).
func metaEntryName(hdr *tar.Header) (name string, skip bool, err error) {
	switch hdr.Typeflag {
	case tar.TypeReg:
	case tar.TypeDir:
		if hdr.Name == "./" || hdr.Name == "." {
			return "", true, nil
		}
		return "", false, fmt.Errorf("%q is a directory: only files at the root are allowed", hdr.Name)
	case tar.TypeXGlobalHeader:
		// pax global headers (git archive, some tars) carry no file.
		return "", true, nil
	default:
		return "", false, fmt.Errorf("%q is a %s: only regular files are allowed", hdr.Name, tarTypeName(hdr.Typeflag))
	}
	name = strings.TrimPrefix(hdr.Name, "./")
	if !validMetaName(name) {
		return "", false, fmt.Errorf("%q is not a plain file name at the root", hdr.Name)
	}
	return name, false, nil
}

// validMetaName reports whether name can be a meta file: one path element,
// at most NAME_MAX bytes, printable UTF-8.
func validMetaName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > 255 || strings.Contains(name, "/") || !utf8.ValidString(name) {
		return false
	}
	return !hasControl(name)
}

func tarTypeName(t byte) string {
	switch t {
	case tar.TypeLink:
		return "hard link"
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "fifo"
	case tar.TypeGNUSparse:
		return "sparse file"
	}
	return fmt.Sprintf("tar entry of type %q", t)
}

// xzError marks an error of the xz layer, so that it says xz.
type xzError struct{ err error }

func (e xzError) Error() string {
	msg := e.err.Error()
	if strings.HasPrefix(msg, "xz: ") {
		return msg
	}
	if errors.Is(e.err, io.ErrUnexpectedEOF) {
		return "xz: truncated data"
	}
	return "xz: " + msg
}

func (e xzError) Unwrap() error { return e.err }

// limitedXZ reads the decompressed stream, marking the decoder's errors as
// xz errors and refusing more than left bytes.
type limitedXZ struct {
	r    io.Reader
	left int64
}

func (l *limitedXZ) Read(p []byte) (int, error) {
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n, fmt.Errorf("more than %d bytes uncompressed", MaxMetaTar)
	}
	if err != nil && err != io.EOF {
		err = xzError{err}
	}
	return n, err
}

// Relevant returns the relevant file for name in mode (SPEC 5): NAME-MODE
// if there is one, else NAME; then THAT.LEVEL if there is one. ok is false
// when the file that rule picks does not exist.
func (m MetaFiles) Relevant(name string, mode Mode) (data []byte, ok bool) {
	key, ok := relevantName(name, mode, func(n string) bool { _, ok := m[n]; return ok })
	if !ok {
		return nil, false
	}
	return m[key], true
}

// Check makes sure the files are usable in mode before they replace a
// cached copy: the relevant config exists (ErrNoConfig otherwise) and the
// relevant expiry, if any, is a Unix time.
func (m MetaFiles) Check(mode Mode) error {
	if _, ok := m.Relevant("config", mode); !ok {
		return ErrNoConfig
	}
	if data, ok := m.Relevant("expiry", mode); ok {
		if _, err := ParseExpiry(data); err != nil {
			return fmt.Errorf("meta tarball: %w", err)
		}
	}
	return nil
}

// relevantName applies the relevant-file rule with exists telling which
// names exist.
func relevantName(name string, mode Mode, exists func(string) bool) (string, bool) {
	if exists(name + "-" + string(mode)) {
		name += "-" + string(mode)
	}
	if withLevel := name + "." + strconv.Itoa(Level); exists(withLevel) {
		return withLevel, true
	}
	return name, exists(name)
}

// ParseExpiry parses an expiry file: a Unix time in decimal, with
// surrounding white space (the shell template compared $(cat expiry) with
// test -lt).
func ParseExpiry(data []byte) (time.Time, error) {
	s := strings.TrimSpace(string(data))
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("expiry %q is not a Unix time", s)
	}
	return time.Unix(sec, 0), nil
}

// Meta is a cache entry's meta files, unpacked in Dir as the shell template
// kept them, seen in Mode.
type Meta struct {
	Dir  string
	Mode Mode
}

// Path returns the path of the relevant file for name (see
// MetaFiles.Relevant); ok is false when it does not exist.
func (m Meta) Path(name string) (string, bool) {
	if !validMetaName(name) {
		return "", false
	}
	key, ok := relevantName(name, m.Mode, func(n string) bool {
		_, err := os.Stat(filepath.Join(m.Dir, n))
		return err == nil
	})
	return filepath.Join(m.Dir, key), ok
}

// Read returns the relevant file for name; ok is false when there is none.
func (m Meta) Read(name string) (data []byte, ok bool, err error) {
	p, ok := m.Path(name)
	if !ok {
		return nil, false, nil
	}
	return readMetaFile(p)
}

func readMetaFile(p string) (data []byte, ok bool, err error) {
	data, err = os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		// Gone since it was looked for: the same as never there.
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read meta file: %w", err)
	}
	return data, true, nil
}

// Lines returns the non-empty lines of the relevant file for name (nil
// when there is none), as the shell template's read loop saw them: without
// surrounding spaces and tabs. Unlike read(1), a CR before the newline is
// dropped too and a last line without a newline still counts.
func (m Meta) Lines(name string) ([]string, error) {
	data, ok, err := m.Read(name)
	if err != nil || !ok {
		return nil, err
	}
	return SplitLines(data), nil
}

// SplitLines returns the non-empty lines of a list file (templates,
// excludes) the way Meta.Lines does, for meta files held in memory.
func SplitLines(data []byte) []string {
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.Trim(l, " \t\r"); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// Expiry returns the relevant expiry time; ok is false when the image has
// none. A malformed expiry is an error naming the file.
func (m Meta) Expiry() (t time.Time, ok bool, err error) {
	p, ok := m.Path("expiry")
	if !ok {
		return time.Time{}, false, nil
	}
	data, ok, err := readMetaFile(p)
	if err != nil || !ok {
		return time.Time{}, false, err
	}
	if t, err = ParseExpiry(data); err != nil {
		return time.Time{}, false, fmt.Errorf("%s: %w", p, err)
	}
	return t, true, nil
}
