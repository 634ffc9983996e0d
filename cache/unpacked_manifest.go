package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The manifest of an unpacked copy describes every entry of the rootfs as
// an unpack made it: its type, permission bits, owner, times, extended
// attributes, and, for a regular file, its size and SHA256 (which names
// the file's content in the copy). A clone makes the tree from the
// manifest alone; the copy's files only give content, which is checked
// against the manifest as it is cloned. The manifest is text, one entry a
// line, fields separated by one space:
//
//	lxc-download unpacked 1
//	rootfs SHA256-OF-ROOTFS.TAR.XZ
//	KIND MODE UID GID ATIME MTIME PATH [ARGS...] [x NAME VALUE]...
//
// KIND is d (directory), f (regular file: SIZE SHA256), l (symbolic link:
// TARGET), h (hard link to the earlier entry at PATH), c and b (devices:
// MAJOR MINOR) or p (fifo). MODE is octal (the 07777 bits); times are
// SECONDS.NANOSECONDS, or "-" when not set; PATH, TARGET and the xattrs'
// NAME and VALUE are Go-quoted strings. PATH is relative to the rootfs,
// "." for its root entry. Directories come before their content.
const manifestHeader = "lxc-download unpacked 1"

// maxManifestSize bounds the manifest read back from the cache: about 150
// bytes an entry, for far more entries than a rootfs has.
const maxManifestSize = 64 << 20

// manifestEntry is one line of a manifest.
type manifestEntry struct {
	kind         byte
	path         string
	mode         uint32
	uid, gid     uint32
	atime, mtime unix.Timespec
	size         int64
	sum          [sha256.Size]byte
	link         string // l: the target; h: the path linked to
	major, minor uint32
	xattrs       []xattr
}

// manifest is a parsed manifest.
type manifest struct {
	rootfs  string // SHA256 of the rootfs tarball it was unpacked from
	entries []manifestEntry
}

// omitTime is a time the manifest leaves unset ("-").
var omitTime = unix.Timespec{Nsec: unix.UTIME_OMIT}

func appendTime(b []byte, t unix.Timespec) []byte {
	if t.Nsec == unix.UTIME_OMIT {
		return append(b, '-')
	}
	b = strconv.AppendInt(b, int64(t.Sec), 10)
	ns := strconv.AppendInt(make([]byte, 0, 9), int64(t.Nsec), 10)
	b = append(b, ".000000000"[:10-len(ns)]...)
	return append(b, ns...)
}

// marshal writes the manifest.
func (m *manifest) marshal() []byte {
	b := make([]byte, 0, 64+len(m.entries)*120)
	b = append(b, manifestHeader+"\nrootfs "...)
	b = append(b, m.rootfs...)
	b = append(b, '\n')
	for i := range m.entries {
		en := &m.entries[i]
		b = append(b, en.kind, ' ')
		b = strconv.AppendUint(b, uint64(en.mode), 8)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(en.uid), 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(en.gid), 10)
		b = append(b, ' ')
		b = appendTime(b, en.atime)
		b = append(b, ' ')
		b = appendTime(b, en.mtime)
		b = append(b, ' ')
		b = strconv.AppendQuote(b, en.path)
		switch en.kind {
		case 'f':
			b = append(b, ' ')
			b = strconv.AppendInt(b, en.size, 10)
			b = append(b, ' ')
			b = hex.AppendEncode(b, en.sum[:])
		case 'l', 'h':
			b = append(b, ' ')
			b = strconv.AppendQuote(b, en.link)
		case 'c', 'b':
			b = append(b, ' ')
			b = strconv.AppendUint(b, uint64(en.major), 10)
			b = append(b, ' ')
			b = strconv.AppendUint(b, uint64(en.minor), 10)
		}
		for _, x := range en.xattrs {
			b = append(b, " x "...)
			b = strconv.AppendQuote(b, x.name)
			b = append(b, ' ')
			b = strconv.AppendQuote(b, string(x.value))
		}
		b = append(b, '\n')
	}
	return b
}

// fieldReader takes the space-separated fields of one manifest line.
type fieldReader struct {
	s   string
	err error
}

func (f *fieldReader) fail(format string, a ...any) {
	if f.err == nil {
		f.err = fmt.Errorf(format, a...)
	}
}

// word takes the next unquoted field.
func (f *fieldReader) word(what string) string {
	if f.err != nil {
		return ""
	}
	if f.s == "" {
		f.fail("no %s", what)
		return ""
	}
	w, rest, _ := strings.Cut(f.s, " ")
	f.s = rest
	return w
}

// quoted takes the next field, a Go-quoted string.
func (f *fieldReader) quoted(what string) string {
	if f.err != nil {
		return ""
	}
	q, err := strconv.QuotedPrefix(f.s)
	if err != nil {
		f.fail("%s is not quoted", what)
		return ""
	}
	v, _ := strconv.Unquote(q)
	f.s = f.s[len(q):]
	if f.s != "" {
		if f.s[0] != ' ' {
			f.fail("no space after %s", what)
			return ""
		}
		f.s = f.s[1:]
	}
	return v
}

func (f *fieldReader) uint(what string, base, bits int) uint64 {
	w := f.word(what)
	if f.err != nil {
		return 0
	}
	n, err := strconv.ParseUint(w, base, bits)
	if err != nil {
		f.fail("bad %s %q", what, w)
	}
	return n
}

func (f *fieldReader) time(what string) unix.Timespec {
	w := f.word(what)
	if f.err != nil || w == "-" {
		return omitTime
	}
	s, ns, ok := strings.Cut(w, ".")
	sec, err1 := strconv.ParseInt(s, 10, 64)
	nsec, err2 := strconv.ParseInt(ns, 10, 64)
	if !ok || err1 != nil || err2 != nil || len(ns) != 9 || nsec < 0 {
		f.fail("bad %s %q", what, w)
		return omitTime
	}
	ts, err := unix.TimeToTimespec(time.Unix(sec, nsec))
	if err != nil {
		f.fail("%s %q out of range", what, w)
	}
	return ts
}

// parseManifest reads a manifest and checks that it describes a tree a
// clone can make without leaving it: clean relative paths, each once, each
// in a directory listed before it, hard links to regular files or links
// listed before them, and the limits of an unpack.
func parseManifest(b []byte, lim Limits) (*manifest, error) {
	lim = lim.withDefaults()
	head, rest, _ := bytes.Cut(b, []byte("\n"))
	if string(head) != manifestHeader {
		return nil, errors.New("manifest: not an lxc-download manifest of a known version")
	}
	line, rest, _ := bytes.Cut(rest, []byte("\n"))
	sum, ok := strings.CutPrefix(string(line), "rootfs ")
	if d, err := hex.DecodeString(sum); !ok || err != nil || len(d) != sha256.Size {
		return nil, errors.New("manifest: no rootfs line")
	}
	m := &manifest{rootfs: sum}
	kinds := map[string]byte{".": 'd'}
	var total int64
	for n := 3; len(rest) > 0; n++ {
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		en, err := parseManifestLine(string(line), lim)
		if err == nil {
			err = checkManifestEntry(en, kinds, len(m.entries) == 0)
		}
		if err == nil && len(m.entries) >= lim.MaxEntries {
			err = fmt.Errorf("more than %d entries", lim.MaxEntries)
		}
		if err == nil && en.kind == 'f' {
			if total += en.size; total > lim.MaxTotalSize {
				err = fmt.Errorf("more than %d bytes of files", lim.MaxTotalSize)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("manifest line %d: %w", n, err)
		}
		if en.path != "." {
			kinds[en.path] = en.kind
		}
		m.entries = append(m.entries, en)
	}
	return m, nil
}

// checkManifestEntry checks en against the paths listed before it
// (kinds); first says it is the first entry, the only place for ".".
func checkManifestEntry(en manifestEntry, kinds map[string]byte, first bool) error {
	if en.path == "." {
		if !first || en.kind != 'd' {
			return errors.New(`"." is not the first entry, or not a directory`)
		}
		return nil
	}
	if c, err := cleanName(en.path); err != nil || c != en.path {
		return fmt.Errorf("path %q is not a clean relative path", en.path)
	}
	if _, dup := kinds[en.path]; dup {
		return fmt.Errorf("path %q is listed twice", en.path)
	}
	dir, _ := splitName(en.path)
	if dir == "" {
		dir = "."
	}
	if kinds[dir] != 'd' {
		return fmt.Errorf("path %q is not in a directory listed before it", en.path)
	}
	if en.kind == 'h' {
		if k := kinds[en.link]; k != 'f' && k != 'l' && k != 'c' && k != 'b' && k != 'p' {
			return fmt.Errorf("hard link %q to %q, which is not a file listed before it", en.path, en.link)
		}
	}
	return nil
}

func parseManifestLine(line string, lim Limits) (manifestEntry, error) {
	var en manifestEntry
	f := &fieldReader{s: line}
	kind := f.word("kind")
	if len(kind) != 1 || !strings.Contains("dflhcbp", kind) {
		f.fail("unknown kind %q", kind)
	} else {
		en.kind = kind[0]
	}
	en.mode = uint32(f.uint("mode", 8, 32))
	if en.mode&^0o7777 != 0 {
		f.fail("bad mode %o", en.mode)
	}
	en.uid = uint32(f.uint("uid", 10, 32))
	en.gid = uint32(f.uint("gid", 10, 32))
	en.atime = f.time("atime")
	en.mtime = f.time("mtime")
	en.path = f.quoted("path")
	if len(en.path) > lim.MaxPathLength {
		f.fail("path of %d bytes", len(en.path))
	}
	switch en.kind {
	case 'f':
		en.size = int64(f.uint("size", 10, 63))
		if en.size > lim.MaxFileSize {
			f.fail("file of %d bytes", en.size)
		}
		if d, err := hex.DecodeString(f.word("sha256")); f.err == nil && (err != nil || len(d) != sha256.Size) {
			f.fail("bad sha256")
		} else {
			copy(en.sum[:], d)
		}
	case 'l', 'h':
		en.link = f.quoted("link")
		if len(en.link) > lim.MaxPathLength {
			f.fail("link of %d bytes", len(en.link))
		}
		if en.link == "" || strings.IndexByte(en.link, 0) >= 0 {
			f.fail("empty link, or one with a NUL byte")
		}
	case 'c', 'b':
		en.major = uint32(f.uint("major", 10, 32))
		en.minor = uint32(f.uint("minor", 10, 32))
	}
	for f.err == nil && f.s != "" {
		if f.word("xattr") != "x" {
			f.fail("unknown field")
			break
		}
		name := f.quoted("xattr name")
		value := f.quoted("xattr value")
		if name == "" || strings.IndexByte(name, 0) >= 0 || len(value) > lim.MaxXattrSize {
			f.fail("bad xattr %q", name)
		}
		en.xattrs = append(en.xattrs, xattr{name: name, value: []byte(value)})
		if len(en.xattrs) > lim.MaxXattrs {
			f.fail("more than %d xattrs", lim.MaxXattrs)
		}
	}
	return en, f.err
}

// objectName is the name of the content sum in the copy's directory.
func objectName(sum *[sha256.Size]byte) string {
	return hex.EncodeToString(sum[:])
}
