package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/lxc/lxc-download/cache/xzpar"
	"github.com/lxc/lxc-download/compat"
)

// Stage is a directory a new image is downloaded into before it becomes a
// cache entry. The downloader writes rootfs.tar.xz and meta.tar.xz into Dir,
// both verified; Commit then turns them into an entry.
type Stage struct {
	// Dir is the staging directory. A stage of the cache is the same
	// directory in every run for a key, and partial downloads
	// (NAME.partial and NAME.partial.info) left there by an interrupted run
	// are kept, so the next run can resume them.
	Dir string

	p         paths // zero for a temporary stage
	root      string
	temp      bool
	committed bool
}

// Stage returns the staging directory of k in the store, on the same
// filesystem as the entry so that Commit can rename into place. It keeps
// resumable partial downloads and removes anything else a killed run left.
// The caller holds the entry's lock until Commit or Abort.
func (c Cache) Stage(k Key) (*Stage, error) {
	p, err := c.paths(k)
	if err != nil {
		return nil, err
	}
	if err := settle(p); err != nil {
		return nil, fmt.Errorf("prepare the cache: %w", spaceHint(err))
	}
	if err := os.MkdirAll(p.stage, 0o755); err != nil {
		return nil, fmt.Errorf("create staging directory: %w", spaceHint(err))
	}
	s := &Stage{Dir: p.stage, p: p, root: c.Root}
	if err := s.clean(); err != nil {
		return nil, fmt.Errorf("clean staging directory: %w", err)
	}
	return s, nil
}

// NewTempStage makes a stage outside the cache, in a new hidden directory
// inside parent, for when the cache is not writable: the temporary files go
// next to the container then, never to /tmp. Its Commit makes the entry in
// place, and Cleanup removes it once it has been used.
func NewTempStage(parent string) (*Stage, error) {
	if parent == "" {
		return nil, errors.New("create temporary stage: no directory given")
	}
	dir, err := os.MkdirTemp(parent, ".lxc-download-")
	if err != nil {
		return nil, fmt.Errorf("create temporary stage: %w", spaceHint(err))
	}
	return &Stage{Dir: dir, temp: true}, nil
}

// Abort gives up the stage: it removes everything in it except resumable
// partial downloads (all of a temporary stage). After a successful Commit it
// only tidies up: the entry stays (that of a temporary stage until Cleanup).
func (s *Stage) Abort() {
	if s.temp {
		if !s.committed {
			os.RemoveAll(s.Dir)
		}
		return
	}
	s.clean()
	os.Remove(s.Dir) // only if nothing resumable is left
}

// Cleanup removes the stage and everything in it: partial downloads too
// (after a download failed for a full disk, they would keep the space), and
// for a temporary stage the entry Commit made in it, once it has been used.
// A committed entry of the cache is not in the stage and stays.
func (s *Stage) Cleanup() {
	os.RemoveAll(s.Dir)
}

// clean removes what is in the stage except partial downloads.
func (s *Stage) clean() error {
	des, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var first error
	for _, de := range des {
		if resumable(de.Name()) && de.Type().IsRegular() {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.Dir, de.Name())); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func resumable(name string) bool {
	return strings.HasSuffix(name, ".partial") || strings.HasSuffix(name, ".partial.info")
}

// Commit makes the staged rootfs.tar.xz and meta.tar.xz the entry for build,
// and returns it. The meta tarball must hold a config relevant to mode. A
// stage of the cache replaces the entry atomically: the new entry is written
// and synced beside the old one, swapped in with one rename (RENAME_EXCHANGE,
// or two renames that Lookup completes if a run dies between them), and the
// old one removed; whatever happens, the old entry or the new one is there
// complete, and on failure the old one is untouched.
func (s *Stage) Commit(build string, mode compat.Mode) (*Entry, error) {
	if s.committed {
		return nil, errors.New("store image: stage already committed")
	}
	if build == "" || strings.ContainsAny(build, "\n\x00") {
		return nil, fmt.Errorf("store image: invalid build id %q", build)
	}
	files, err := readMeta(filepath.Join(s.Dir, metaName), mode)
	if err != nil {
		return nil, err
	}
	if err := checkRootfs(filepath.Join(s.Dir, rootfsName)); err != nil {
		return nil, err
	}
	var e *Entry
	if s.temp {
		e, err = s.commitInPlace(build, files)
	} else {
		e, err = s.commitToCache(build, files)
	}
	if err != nil {
		if s.temp {
			return nil, fmt.Errorf("store image in %s: %w", s.Dir, spaceHint(err))
		}
		return nil, fmt.Errorf("store image in the cache %s (the cached copy is unchanged): %w", s.root, spaceHint(err))
	}
	s.committed = true
	return e, nil
}

// readMeta reads the staged meta tarball and checks that it can make an
// entry for mode: a relevant config (else compat.ErrNoConfig, the shell
// template's message, unwrapped), a well-formed expiry, and no file under a
// name the cache keeps for itself.
func readMeta(path string, mode compat.Mode) (compat.MetaFiles, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read meta tarball: %w", err)
	}
	defer f.Close()
	files, err := compat.ReadMetaTarball(f)
	if err != nil {
		return nil, err
	}
	if err := files.Check(mode); err != nil {
		return nil, err
	}
	for name := range files {
		switch {
		case name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00"):
			// compat refuses these already; the paths below rely on it.
			return nil, fmt.Errorf("meta tarball: invalid file name %q", name)
		case name == rootfsName || name == metaName || name == buildIDName || name == recordName || resumable(name):
			return nil, fmt.Errorf("meta tarball: it has a file named %s, which the cache keeps for itself", name)
		}
	}
	return files, nil
}

// checkRootfs refuses a rootfs tarball that is not a complete xz file (a
// signed but truncated or mislabelled upload), so that it never replaces a
// good cached copy. Only the xz container is checked, from its index at the
// end, not the data: a full decode costs as much as the unpack that follows.
func checkRootfs(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read rootfs tarball: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("read rootfs tarball: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("rootfs tarball %s is not a regular file", path)
	}
	// The container's structure (index, footers, block headers) only:
	// decoding starts with the unpack.
	if _, err := xzpar.Stat(f, fi.Size()); err != nil {
		return fmt.Errorf("rootfs tarball: %w", err)
	}
	return nil
}

// writeMeta writes the meta files and build_id into dir, each synced.
func writeMeta(dir, build string, files compat.MetaFiles) error {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := writeFileSync(filepath.Join(dir, name), files[name]); err != nil {
			return err
		}
	}
	return writeFileSync(filepath.Join(dir, buildIDName), []byte(build+"\n"))
}

func (s *Stage) commitInPlace(build string, files compat.MetaFiles) (*Entry, error) {
	fi, err := os.Stat(filepath.Join(s.Dir, rootfsName))
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", filepath.Join(s.Dir, rootfsName))
	}
	if err := writeMeta(s.Dir, build, files); err != nil {
		return nil, err
	}
	e, why, err := openEntry(s.Dir)
	if err != nil {
		return nil, err
	}
	if why != "" {
		return nil, errors.New(why)
	}
	return e, nil
}

// crashHook, when set (by this package's tests only), is called at each step
// of a commit to the cache; a test kills its process there.
var crashHook func(step string)

func step(name string) {
	if crashHook != nil {
		crashHook(name)
	}
}

func (s *Stage) commitToCache(build string, files compat.MetaFiles) (*Entry, error) {
	p := s.p
	staged := filepath.Join(s.Dir, rootfsName)
	rec := record{Format: recordFormat, Build: build}
	if err := sumAndSync(staged, &rec); err != nil {
		return nil, err
	}
	if err := settle(p); err != nil {
		return nil, err
	}
	if err := os.Mkdir(p.tmp, 0o755); err != nil {
		return nil, err
	}
	fail := func(err error) (*Entry, error) {
		os.RemoveAll(p.tmp)
		return nil, err
	}
	if err := writeMeta(p.tmp, build, files); err != nil {
		return fail(err)
	}
	if err := writeFileSync(filepath.Join(p.tmp, recordName), rec.marshal()); err != nil {
		return fail(err)
	}
	if err := os.Rename(staged, filepath.Join(p.tmp, rootfsName)); err != nil {
		return fail(err)
	}
	if err := syncDir(p.tmp); err != nil {
		os.Rename(filepath.Join(p.tmp, rootfsName), staged)
		return fail(err)
	}
	step("built")
	// Only a complete, synced entry is ever named .new: settle relies on it.
	if err := os.Rename(p.tmp, p.next); err != nil {
		return fail(err)
	}
	if err := syncDir(p.parent); err != nil {
		discard(p.next, p.old)
		return nil, err
	}
	step("ready")
	if err := swap(p); err != nil {
		return nil, err
	}
	e, why, err := openEntry(p.entry)
	if err != nil {
		return nil, err
	}
	if why != "" {
		return nil, fmt.Errorf("the stored entry %s is unusable: %s", p.entry, why)
	}
	return e, nil
}

// noExchange is set once renameat2(RENAME_EXCHANGE) is known not to work
// here; tests set it to exercise the two-rename swap.
var noExchange atomic.Bool

// swap puts the complete entry p.next in place of p.entry and removes the
// old one.
func swap(p paths) error {
	if !exists(p.entry) {
		if err := os.Rename(p.next, p.entry); err != nil {
			discard(p.next, p.old)
			return err
		}
		syncDir(p.parent)
		return nil
	}
	if !noExchange.Load() {
		err := unix.Renameat2(unix.AT_FDCWD, p.next, unix.AT_FDCWD, p.entry, unix.RENAME_EXCHANGE)
		if err == nil {
			step("exchanged")
			syncDir(p.parent)
			// p.next now holds the old entry.
			discard(p.next, p.old)
			return nil
		}
		if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.ENOTSUP) {
			discard(p.next, p.old)
			return fmt.Errorf("swap in the new entry: %w", err)
		}
		noExchange.Store(true)
	}
	// Two renames; a run killed between them leaves the entry missing and
	// .new complete, which settle promotes.
	os.RemoveAll(p.old)
	if err := os.Rename(p.entry, p.old); err != nil {
		discard(p.next, p.old)
		return fmt.Errorf("move the old entry aside: %w", err)
	}
	step("aside")
	if err := os.Rename(p.next, p.entry); err != nil {
		os.Rename(p.old, p.entry)
		discard(p.next, p.old)
		return fmt.Errorf("swap in the new entry: %w", err)
	}
	step("swapped")
	syncDir(p.parent)
	os.RemoveAll(p.old)
	return nil
}

// sumAndSync records the size and SHA256 of the staged rootfs and makes its
// content durable before it is renamed into an entry.
func sumAndSync(path string, rec *record) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	sum, err := hashFile(f)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	rec.Rootfs.Size, rec.Rootfs.SHA256 = fi.Size(), sum
	return nil
}

// writeFileSync creates path with data and syncs it.
func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}

// spaceHint makes a full disk or quota explicit in an error.
func spaceHint(err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("out of disk space: %w", err)
	}
	return err
}
