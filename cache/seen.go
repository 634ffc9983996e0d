package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc/lxc-download/compat"
)

// Seen is what the store remembers of an image from one server: the newest
// build and the newest index signature seen, so that an older index or
// build (an attacker replaying old signed files, or a mirror frozen in the
// past) is not accepted silently (see CheckFresh).
type Seen struct {
	// Build is the newest build id seen; "" when none.
	Build string `json:"build,omitempty"`
	// IndexSigned is when the newest index seen was signed; zero when
	// none.
	IndexSigned time.Time `json:"index_signed,omitzero"`
}

// seenFile is the content of an entry's .VARIANT.seen file.
type seenFile struct {
	Format  int             `json:"format"`
	Servers map[string]Seen `json:"servers"`
}

const (
	seenFormat = 1
	// maxSeenSize bounds the file; one server's line is about 100 bytes.
	maxSeenSize = 1 << 20
	// maxSeenServers bounds how many servers one image remembers.
	maxSeenServers = 256
)

// Seen returns what the store remembers of image k from server (the
// zero Seen when nothing). It reads a read-only store too. A store that
// fails the trust check is an error that errors.Is finds ErrUntrusted in;
// a damaged state file is an error too: what it said cannot be known, and
// nothing old may be accepted silently.
func (c Cache) Seen(server string, k Key) (Seen, error) {
	parent, n, err := c.openParent(k, false)
	if errors.Is(err, fs.ErrNotExist) {
		return Seen{}, nil
	}
	if err != nil {
		return Seen{}, fmt.Errorf("read the builds seen: %w", err)
	}
	defer parent.close()
	f, err := readSeen(parent, n.seen, c.trust())
	if err != nil {
		return Seen{}, err
	}
	return f.Servers[server], nil
}

// RecordSeen remembers s for image k from server, keeping the newer of
// each field where the store has one already (an allowed downgrade does
// not lower them). It replaces the state file atomically; call it with the
// entry's lock held.
func (c Cache) RecordSeen(server string, k Key, s Seen) error {
	if s.Build != "" && !validBuild(s.Build) {
		return fmt.Errorf("record the builds seen: invalid build id %q", s.Build)
	}
	parent, n, err := c.openParent(k, true)
	if err != nil {
		return fmt.Errorf("record the builds seen: %w", spaceHint(err))
	}
	defer parent.close()
	f, err := readSeen(parent, n.seen, c.trust())
	if err != nil {
		return err
	}
	old, known := f.Servers[server]
	if !known && len(f.Servers) >= maxSeenServers {
		return fmt.Errorf("record the builds seen: %s already remembers %d servers", parent.join(n.seen), maxSeenServers)
	}
	if old.Build != "" && (s.Build == "" || buildBefore(s.Build, old.Build)) {
		s.Build = old.Build
	}
	if s.IndexSigned.Before(old.IndexSigned) {
		s.IndexSigned = old.IndexSigned
	}
	f.Servers[server] = s
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("record the builds seen: %w", err)
	}
	tmp := n.seen + ".tmp"
	if err := removeAllAt(parent.fd, tmp); err != nil {
		return fmt.Errorf("record the builds seen: %w", err)
	}
	if err := writeFileAt(parent.fd, tmp, append(b, '\n'), 0o644); err != nil {
		unix.Unlinkat(parent.fd, tmp, 0)
		return fmt.Errorf("record the builds seen: %s: %w", parent.path, spaceHint(err))
	}
	if err := unix.Renameat(parent.fd, tmp, parent.fd, n.seen); err != nil {
		unix.Unlinkat(parent.fd, tmp, 0)
		return fmt.Errorf("record the builds seen: %w", &os.LinkError{Op: "rename", Old: parent.join(tmp), New: parent.join(n.seen), Err: err})
	}
	syncDirFd(parent.fd)
	return nil
}

// readSeen reads the state file name in parent; a missing one is empty.
func readSeen(parent storeDir, name string, t trust) (seenFile, error) {
	f := seenFile{Format: seenFormat, Servers: map[string]Seen{}}
	path := parent.join(name)
	b, st, err := readAllAt(parent.fd, name, maxSeenSize)
	switch {
	case err == unix.ENOENT:
		return f, nil
	case err == unix.ELOOP || err == errNotRegular:
		return f, fmt.Errorf("read the builds seen: %s is %s, not a regular file", path, kindAt(parent.fd, name))
	case err != nil:
		return f, fmt.Errorf("read the builds seen: %w", &os.PathError{Op: "read", Path: path, Err: err})
	}
	if err := t.check(&st, path); err != nil {
		return f, fmt.Errorf("read the builds seen: %w", err)
	}
	damaged := func(why string) (seenFile, error) {
		return seenFile{}, fmt.Errorf("read the builds seen: %s is damaged (%s); what it remembered cannot be known, so remove it to start afresh", path, why)
	}
	if len(b) > maxSeenSize {
		return damaged(fmt.Sprintf("more than %d bytes", maxSeenSize))
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return damaged(err.Error())
	}
	if f.Format != seenFormat {
		return damaged(fmt.Sprintf("format %d, want %d", f.Format, seenFormat))
	}
	if f.Servers == nil {
		f.Servers = map[string]Seen{}
	}
	for server, s := range f.Servers {
		if s.Build != "" && !validBuild(s.Build) {
			return damaged(fmt.Sprintf("invalid build id %q for %s", s.Build, server))
		}
	}
	return f, nil
}

// validBuild reports whether a build id can be stored: not empty, no
// control characters.
func validBuild(b string) bool {
	if b == "" || len(b) > 256 {
		return false
	}
	for _, r := range b {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// buildBefore reports whether build a is older than build b. Builds of
// the form YYYYMMDD_HH:MM compare as strings; builds of another form
// cannot be ordered, and are never older.
func buildBefore(a, b string) bool {
	// Ids of the form of images.linuxcontainers.org and distrobuilder,
	// YYYYMMDD_HH:MM (UTC), compare as times when compared as strings.
	return compat.ValidBuildID(a) && compat.ValidBuildID(b) && a < b
}

// ErrDowngrade is the error of an index or build older than one seen
// before; errors.As finds the *DowngradeError with the details.
var ErrDowngrade = errors.New("older than seen before")

// DowngradeError is CheckFresh's refusal.
type DowngradeError struct {
	// Build and SeenBuild are the build offered and the newest seen.
	Build, SeenBuild string
	// Signed and SeenSigned are the offered index's signature time and
	// the newest seen, when the index is what is older.
	Signed, SeenSigned time.Time
}

func (e *DowngradeError) Error() string {
	if !e.SeenSigned.IsZero() {
		return fmt.Sprintf("the image index was signed at %s, before the one seen earlier (signed at %s): an old index is being replayed or the mirror is stale; it offers build %s, the newest seen is %s",
			e.Signed.UTC().Format(time.RFC3339), e.SeenSigned.UTC().Format(time.RFC3339), orNone(e.Build), orNone(e.SeenBuild))
	}
	return fmt.Sprintf("the server offers build %s, older than build %s seen earlier", e.Build, e.SeenBuild)
}

// Is makes errors.Is(err, ErrDowngrade) true.
func (e *DowngradeError) Is(target error) bool { return target == ErrDowngrade }

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// CheckFresh refuses an index signed at indexSigned offering build when
// either is older than what seen remembers, with a *DowngradeError naming
// both builds, unless allowDowngrade (an explicit option, or a pinned older
// build). Build ids of the form YYYYMMDD_HH:MM compare as strings, which
// orders them in time; ids of another form are not compared, and only the
// index's signature time protects them. A zero indexSigned is not
// compared.
func CheckFresh(seen Seen, build string, indexSigned time.Time, allowDowngrade bool) error {
	if allowDowngrade {
		return nil
	}
	if !indexSigned.IsZero() && indexSigned.Before(seen.IndexSigned) {
		return &DowngradeError{Build: build, SeenBuild: seen.Build, Signed: indexSigned, SeenSigned: seen.IndexSigned}
	}
	if buildBefore(build, seen.Build) {
		return &DowngradeError{Build: build, SeenBuild: seen.Build}
	}
	return nil
}
