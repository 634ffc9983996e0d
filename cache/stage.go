package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc/lxc-download/cache/xzpar"
	"github.com/lxc/lxc-download/compat"
)

// Stage is a directory a new image is downloaded into before it becomes a
// cache entry. The downloader writes rootfs.tar.xz and meta.tar.xz into Dir,
// both verified; CommitWith then turns them into an entry.
type Stage struct {
	// Dir is the staging directory, mode 0700. A stage of the cache is
	// the same directory in every run for a key, and partial downloads
	// (NAME.partial and NAME.partial.info) left there by an interrupted run
	// are kept, so the next run can resume them.
	Dir string
	// Fetched, when not zero, is when the image counts as downloaded
	// (Entry.Fetched, from which MaxAge runs) instead of the time of the
	// commit: for a copy moved from another host, whose age only its
	// signatures tell. A time after the commit's is not taken.
	Fetched time.Time

	c         Cache
	k         Key
	temp      bool
	lock      *os.File // a temporary stage's flock, which CleanStaleStages respects
	committed bool
}

// Stage returns the staging directory of k in the store, on the same
// filesystem as the entry so that Commit can rename into place. It keeps
// resumable partial downloads and removes anything else a killed run left
// (a symbolic link in its place included, without following it). The
// caller holds the entry's lock until Commit or Abort.
func (c Cache) Stage(k Key) (*Stage, error) {
	parent, n, err := c.openParent(k, true)
	if err != nil {
		return nil, fmt.Errorf("prepare the cache: %w", spaceHint(err))
	}
	defer parent.close()
	if err := c.settle(parent, n); err != nil {
		return nil, fmt.Errorf("prepare the cache: %w", spaceHint(err))
	}
	sd, err := makeStageDir(parent, n.stage, c.trust())
	if err != nil {
		return nil, fmt.Errorf("create staging directory: %w", spaceHint(err))
	}
	defer sd.close()
	s := &Stage{Dir: sd.path, c: c, k: k}
	if err := cleanStage(sd); err != nil {
		return nil, fmt.Errorf("clean staging directory: %w", err)
	}
	return s, nil
}

// makeStageDir opens the cache stage name in parent, making it, and makes
// sure it is a directory of the running user with mode 0700: downloads in
// it are not verified yet.
func makeStageDir(parent storeDir, name string, t trust) (storeDir, error) {
	sd, err := parent.sub(name, true, 0o700)
	if errors.Is(err, ErrUntrusted) || errors.Is(err, unix.ENOTDIR) {
		// Not a directory: nothing of ours to keep.
		if rerr := removeAllAt(parent.fd, name); rerr != nil {
			return sd, rerr
		}
		sd, err = parent.sub(name, true, 0o700)
	}
	if err != nil {
		return sd, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(sd.fd, &st); err != nil {
		sd.close()
		return storeDir{fd: -1}, err
	}
	if st.Uid != uint32(os.Geteuid()) {
		sd.close()
		return storeDir{fd: -1}, &UntrustedError{Path: sd.path, Reason: fmt.Sprintf("is owned by uid %d, not by this user (uid %d)", st.Uid, os.Geteuid())}
	}
	if st.Mode&0o7777 != 0o700 {
		if err := chmodHandle(sd.fd, 0o700); err != nil {
			sd.close()
			return storeDir{fd: -1}, &os.PathError{Op: "chmod", Path: sd.path, Err: err}
		}
	}
	return sd, nil
}

// NewTempStage makes a stage outside the cache, in a new private (0700)
// directory inside parent, for when the cache is not writable or not
// trusted: the temporary files go next to the container then, never to
// /tmp. Temporary stages that killed runs left in parent are removed first
// (see CleanStaleStages). Its Commit makes the entry in place, and Cleanup
// removes it once it has been used.
func NewTempStage(parent string) (*Stage, error) {
	if parent == "" {
		return nil, errors.New("create temporary stage: no directory given")
	}
	if err := cleanStaleIn(parent, tempStagePrefix); err != nil {
		return nil, fmt.Errorf("create temporary stage: %w", err)
	}
	dir, lock, err := makePrivateDir(parent, tempStagePrefix)
	if err != nil {
		return nil, fmt.Errorf("create temporary stage: %w", spaceHint(err))
	}
	return &Stage{Dir: dir, temp: true, lock: lock}, nil
}

// open opens the stage's directory, checked.
func (s *Stage) open() (storeDir, error) {
	if s.temp {
		return openPrivateDir(s.Dir)
	}
	parent, n, err := s.c.openParent(s.k, false)
	if err != nil {
		return storeDir{fd: -1}, err
	}
	defer parent.close()
	return makeStageDir(parent, n.stage, s.c.trust())
}

// Abort gives up the stage: it removes everything in it except resumable
// partial downloads (all of a temporary stage). After a successful Commit it
// only tidies up: the entry stays (that of a temporary stage until Cleanup).
func (s *Stage) Abort() {
	if s.temp {
		if !s.committed {
			s.Cleanup()
		}
		return
	}
	parent, n, err := s.c.openParent(s.k, false)
	if err != nil {
		return
	}
	defer parent.close()
	sd, err := parent.sub(n.stage, false, 0)
	if err != nil {
		return
	}
	cleanStage(sd)
	sd.close()
	unix.Unlinkat(parent.fd, n.stage, unix.AT_REMOVEDIR) // only if nothing resumable is left
}

// Cleanup removes the stage and everything in it: partial downloads too
// (after a download failed for a full disk, they would keep the space), and
// for a temporary stage the entry Commit made in it, once it has been used.
// A committed entry of the cache is not in the stage and stays.
func (s *Stage) Cleanup() {
	if s.temp {
		if pfd, err := openDirPath(filepath.Dir(s.Dir)); err == nil {
			removeAllAt(pfd, filepath.Base(s.Dir))
			unix.Close(pfd)
		}
		if s.lock != nil {
			s.lock.Close()
			s.lock = nil
		}
		return
	}
	parent, n, err := s.c.openParent(s.k, false)
	if err != nil {
		return
	}
	defer parent.close()
	removeAllAt(parent.fd, n.stage)
}

// cleanStage removes what is in the stage except partial downloads.
func cleanStage(sd storeDir) error {
	fd, err := unix.Openat(sd.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: sd.path, Err: err}
	}
	d := os.NewFile(uintptr(fd), sd.path)
	des, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return err
	}
	var first error
	for _, de := range des {
		if resumable(de.Name()) && de.Type().IsRegular() {
			continue
		}
		if err := removeAllAt(sd.fd, de.Name()); err != nil && first == nil {
			first = fmt.Errorf("%s: %w", sd.join(de.Name()), err)
		}
	}
	return first
}

func resumable(name string) bool {
	return strings.HasSuffix(name, ".partial") || strings.HasSuffix(name, ".partial.info")
}

// Commit is CommitWith without trust material: the entry is recorded as
// not verified.
//
// Deprecated: a caller that verified the image passes what it verified it
// with to CommitWith, so that every later use can verify it again.
func (s *Stage) Commit(build string, mode compat.Mode) (*Entry, error) {
	return s.CommitWith(build, mode, Trust{})
}

// CommitWith makes the staged rootfs.tar.xz and meta.tar.xz the entry for
// build, recording t, what the caller verified them with, and returns it.
// The meta tarball must hold a config relevant to mode. A stage of the
// cache replaces the entry atomically: the new entry is written and synced
// beside the old one, swapped in with one rename (RENAME_EXCHANGE, or two
// renames that Lookup completes if a run dies between them), and the old
// one removed; whatever happens, the old entry or the new one is there
// complete, and on failure the old one is untouched.
func (s *Stage) CommitWith(build string, mode compat.Mode, t Trust) (*Entry, error) {
	if s.committed {
		return nil, errors.New("store image: stage already committed")
	}
	if build == "" || strings.ContainsAny(build, "\n\x00") {
		return nil, fmt.Errorf("store image: invalid build id %q", build)
	}
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("store image: %w", err)
	}
	sd, err := s.open()
	if err != nil {
		return nil, fmt.Errorf("store image: %w", err)
	}
	defer sd.close()
	meta, files, err := readMeta(sd, mode)
	if err != nil {
		return nil, err
	}
	if err := checkRootfs(sd); err != nil {
		return nil, err
	}
	metaSum := sha256.Sum256(meta)
	rec := record{Format: recordFormat, Build: build, Trust: t,
		Meta: fileSum{Size: int64(len(meta)), SHA256: hex.EncodeToString(metaSum[:])}}
	var e *Entry
	if rec.Rootfs, err = sumAndSync(sd, rootfsName); err == nil {
		if s.temp {
			e, err = s.commitInPlace(sd, rec, files)
		} else {
			e, err = s.commitToCache(sd, rec, meta, files)
		}
	}
	if err != nil {
		if s.temp {
			return nil, fmt.Errorf("store image in %s: %w", s.Dir, spaceHint(err))
		}
		return nil, fmt.Errorf("store image in the cache %s (the cached copy is unchanged): %w", s.c.Root, spaceHint(err))
	}
	s.committed = true
	return e, nil
}

// readMeta reads the staged meta tarball and checks that it can make an
// entry for mode: a relevant config (else compat.ErrNoConfig, the shell
// template's message, unwrapped), a well-formed expiry, and no file under a
// name the cache keeps for itself.
func readMeta(sd storeDir, mode compat.Mode) ([]byte, compat.MetaFiles, error) {
	b, _, err := readAllAt(sd.fd, metaName, compat.MaxMetaCompressed)
	if err != nil {
		return nil, nil, fmt.Errorf("read meta tarball: %s: %w", sd.join(metaName), err)
	}
	files, err := compat.ReadMetaTarball(bytes.NewReader(b))
	if err != nil {
		return nil, nil, err
	}
	if err := files.Check(mode); err != nil {
		return nil, nil, err
	}
	for name := range files {
		switch {
		case name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00"):
			// compat refuses these already; the paths below rely on it.
			return nil, nil, fmt.Errorf("meta tarball: invalid file name %q", name)
		case name == rootfsName || name == metaName || name == buildIDName || name == recordName || resumable(name):
			return nil, nil, fmt.Errorf("meta tarball: it has a file named %s, which the cache keeps for itself", name)
		}
	}
	return b, files, nil
}

// checkRootfs refuses a rootfs tarball that is not a complete xz file (a
// signed but truncated or mislabelled upload), so that it never replaces a
// good cached copy. Only the xz container is checked, from its index at the
// end, not the data: a full decode costs as much as the unpack that follows.
func checkRootfs(sd storeDir) error {
	path := sd.join(rootfsName)
	f, st, err := openFileAt(sd.fd, rootfsName)
	if err == errNotRegular || err == unix.ELOOP {
		return fmt.Errorf("rootfs tarball %s is not a regular file", path)
	}
	if err != nil {
		return fmt.Errorf("read rootfs tarball: %w", &os.PathError{Op: "open", Path: path, Err: err})
	}
	defer f.Close()
	// The container's structure (index, footers, block headers) only:
	// decoding starts with the unpack.
	if _, err := xzpar.Stat(f, st.Size); err != nil {
		return fmt.Errorf("rootfs tarball: %w", err)
	}
	return nil
}

// writeMeta writes the meta files and build_id into d, each synced.
func writeMeta(d storeDir, build string, files compat.MetaFiles, fetched time.Time) error {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := writeFileAt(d.fd, name, files[name], 0o644); err != nil {
			return err
		}
	}
	if err := writeFileAt(d.fd, buildIDName, []byte(build+"\n"), 0o644); err != nil {
		return err
	}
	if fetched.IsZero() || fetched.After(time.Now()) {
		return nil
	}
	// build_id's modification time is when the image was fetched, as the
	// shell template has it.
	ts := []unix.Timespec{unix.NsecToTimespec(fetched.UnixNano()), unix.NsecToTimespec(fetched.UnixNano())}
	return unix.UtimesNanoAt(d.fd, buildIDName, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func (s *Stage) commitInPlace(sd storeDir, rec record, files compat.MetaFiles) (*Entry, error) {
	if err := writeMeta(sd, rec.Build, files, s.Fetched); err != nil {
		return nil, err
	}
	if err := writeFileAt(sd.fd, recordName, rec.marshal(), 0o644); err != nil {
		return nil, err
	}
	e, why, err := readEntry(sd, trust{owners: []int{os.Geteuid()}})
	if err != nil {
		return nil, err
	}
	if why != "" {
		return nil, errors.New(why)
	}
	dir := s.Dir
	e.open = func() (storeDir, error) { return openPrivateDir(dir) }
	return e, nil
}

func (s *Stage) commitToCache(sd storeDir, rec record, meta []byte, files compat.MetaFiles) (*Entry, error) {
	c := s.c
	parent, n, err := c.openParent(s.k, false)
	if err != nil {
		return nil, err
	}
	defer parent.close()
	if err := c.settle(parent, n); err != nil {
		return nil, err
	}
	tmp, err := parent.sub(n.tmp, true, 0o755)
	if err != nil {
		return nil, err
	}
	defer tmp.close()
	staged := false // rootfs.tar.xz is in tmp
	fail := func(err error) (*Entry, error) {
		if staged {
			unix.Renameat(tmp.fd, rootfsName, sd.fd, rootfsName)
		}
		removeAllAt(parent.fd, n.tmp)
		return nil, err
	}
	if err := writeMeta(tmp, rec.Build, files, s.Fetched); err != nil {
		return fail(err)
	}
	if err := writeFileAt(tmp.fd, metaName, meta, 0o644); err != nil {
		return fail(err)
	}
	if err := writeFileAt(tmp.fd, recordName, rec.marshal(), 0o644); err != nil {
		return fail(err)
	}
	if err := unix.Renameat(sd.fd, rootfsName, tmp.fd, rootfsName); err != nil {
		return fail(&os.LinkError{Op: "rename", Old: sd.join(rootfsName), New: tmp.join(rootfsName), Err: err})
	}
	staged = true
	if err := syncDirFd(tmp.fd); err != nil {
		return fail(fmt.Errorf("sync %s: %w", tmp.path, err))
	}
	c.step("built")
	// Only a complete, synced entry is ever named .new: settle relies on it.
	if err := unix.Renameat(parent.fd, n.tmp, parent.fd, n.next); err != nil {
		return fail(&os.LinkError{Op: "rename", Old: tmp.path, New: parent.join(n.next), Err: err})
	}
	if err := syncDirFd(parent.fd); err != nil {
		discard(parent, n.next, n.old)
		return nil, fmt.Errorf("sync %s: %w", parent.path, err)
	}
	c.step("ready")
	if err := c.swap(parent, n); err != nil {
		return nil, err
	}
	ed, err := parent.sub(n.entry, false, 0)
	if err != nil {
		return nil, err
	}
	defer ed.close()
	e, why, err := readEntry(ed, c.trust())
	if err != nil {
		return nil, err
	}
	if why != "" {
		return nil, fmt.Errorf("the stored entry %s is unusable: %s", ed.path, why)
	}
	k := s.k
	e.open = func() (storeDir, error) {
		parent, n, err := c.openParent(k, false)
		if err != nil {
			return storeDir{fd: -1}, err
		}
		defer parent.close()
		return parent.sub(n.entry, false, 0)
	}
	return e, nil
}

// swap puts the complete entry .new in place of the entry and removes the
// old one.
func (c Cache) swap(parent storeDir, n names) error {
	rename := func(from, to string) error {
		if err := unix.Renameat(parent.fd, from, parent.fd, to); err != nil {
			return &os.LinkError{Op: "rename", Old: parent.join(from), New: parent.join(to), Err: err}
		}
		return nil
	}
	if !existsAt(parent.fd, n.entry) {
		if err := rename(n.next, n.entry); err != nil {
			discard(parent, n.next, n.old)
			return err
		}
		syncDirFd(parent.fd)
		return nil
	}
	if c.hooks == nil || !c.hooks.noExchange {
		err := unix.Renameat2(parent.fd, n.next, parent.fd, n.entry, unix.RENAME_EXCHANGE)
		if err == nil {
			c.step("exchanged")
			syncDirFd(parent.fd)
			// .new now holds the old entry.
			discard(parent, n.next, n.old)
			return nil
		}
		if err != unix.EINVAL && err != unix.ENOSYS && err != unix.ENOTSUP {
			discard(parent, n.next, n.old)
			return fmt.Errorf("swap in the new entry: %w", err)
		}
	}
	// Two renames; a run killed between them leaves the entry missing and
	// .new complete, which settle promotes.
	removeAllAt(parent.fd, n.old)
	if err := rename(n.entry, n.old); err != nil {
		discard(parent, n.next, n.old)
		return fmt.Errorf("move the old entry aside: %w", err)
	}
	c.step("aside")
	if err := rename(n.next, n.entry); err != nil {
		rename(n.old, n.entry)
		discard(parent, n.next, n.old)
		return fmt.Errorf("swap in the new entry: %w", err)
	}
	c.step("swapped")
	syncDirFd(parent.fd)
	removeAllAt(parent.fd, n.old)
	return nil
}

// sumAndSync returns the size and SHA256 of the staged file name and makes
// its content durable before it is renamed into an entry.
func sumAndSync(sd storeDir, name string) (fileSum, error) {
	path := sd.join(name)
	f, st, err := openFileAt(sd.fd, name)
	if err != nil {
		return fileSum{}, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fileSum{}, fmt.Errorf("read %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fileSum{}, fmt.Errorf("sync %s: %w", path, err)
	}
	return fileSum{Size: st.Size, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// spaceHint makes a full disk or quota explicit in an error.
func spaceHint(err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("out of disk space: %w", err)
	}
	return err
}
