package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc/lxc-download/cache"
	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
)

// image is a verified image ready to unpack, taken from the cache under its
// lock: the meta files (from the entry's own meta tarball, verified again)
// and the rootfs tarball, open. When the rootfs was unpacked while it
// downloaded, staged holds that tree, verified with the download, and
// rootfs is nil.
type image struct {
	meta   compat.MetaFiles
	rootfs *cache.RootfsReader
	// check, when not nil, is fed the rootfs as it is read: the image's
	// only evidence for it is its own signature.
	check  *fetch.Check
	staged *cache.RootfsStage
	// release removes a download that the cache could not keep.
	release func()

	// unpacked is the entry's unpacked copy, opened and checked under
	// the entry's lock, to clone the rootfs from (nil: unpack the
	// tarball). keep, when not nil, keeps a verified unpack as the
	// entry's unpacked copy (replacing one that failed its checks).
	unpacked *cache.UnpackedCopy
	keep     func(ctx context.Context, rs *cache.RootfsStage, replace bool) error
	replace  bool
}

// close lets go of what the image holds: the tarball, a stage never
// installed, a temporary download.
func (img *image) close() {
	if img.rootfs != nil {
		img.rootfs.Close()
	}
	if img.staged != nil {
		img.staged.Discard()
	}
	if img.release != nil {
		img.release()
	}
	img.unpacked.Close()
}

// store is the cache as this run may use it.
type store struct {
	cache.Cache
	key cache.Key
	// usable is false when the cache cannot be trusted or used at all:
	// nothing is looked up, and a download goes to a private temporary
	// directory and is not kept.
	usable bool
	// readOnly, when not nil, says why the cache cannot take a new entry:
	// what it holds is used, and a download is not kept.
	readOnly error
	// transient is set for a pinned build (--build), which is never kept:
	// the entry holds what runs without --build downloaded, so that such
	// a run never finds an older build there and takes it for current.
	transient bool
}

// keeps reports whether a download is stored in the cache.
func (st *store) keeps() bool {
	return st.usable && st.readOnly == nil && !st.transient
}

// cacheRoot is $LXC_CACHE_PATH, else the system or per-user default.
func (r *run) cacheRoot() (string, error) {
	return cacheRootFor(r.o.CachePath, r.o.Home, r.ns)
}

// openStore sets up the cache for the image. A cache that is not safe to
// use (another user could write to it) or cannot be used (its path is a
// file) is warned about once and left alone.
func (r *run) openStore() (*store, error) {
	o := r.o
	root, err := r.cacheRoot()
	if err != nil {
		return nil, err
	}
	st := &store{
		Cache: cache.Cache{Root: root, Warn: r.s.Stderr, Info: r.s.Stderr, LockTimeout: o.LockTimeout},
		key:   cache.Key{Dist: o.Dist, Release: o.Release, Arch: o.Arch, Variant: o.Variant},
	}
	if err := st.key.Check(); err != nil {
		return nil, err
	}
	if o.MappedUID >= 0 {
		// The cache is handed to the container's owner (see refresh).
		st.Owners = []int{o.MappedUID}
	}
	switch err := st.Writable(); {
	case err == nil:
		st.usable = true
	case errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
		st.usable, st.readOnly = true, err
	default:
		r.noCache(st, err)
	}
	return st, nil
}

// noCache gives up the cache for this run, saying so once.
func (r *run) noCache(st *store, why error) {
	st.usable = false
	r.warnOnce("nocache", "Not using the cache %s: %v; downloading to a private directory without caching", st.Root, why)
}

// obtain makes sure the cache holds a current copy of the image (SPEC 6),
// verifies it again, and returns it ready to unpack. A release the index
// does not have but the simplestreams name as an alias ("12" for
// "bookworm") is resolved, and everything starts again for that release:
// its cache entry, its lock, what was seen of it.
func (r *run) obtain(ctx context.Context) (*image, error) {
	img, err := r.obtainRelease(ctx)
	var aliased *releaseAliased
	if !errors.As(err, &aliased) {
		return img, err
	}
	r.o.Release = aliased.Release
	return r.obtainRelease(ctx)
}

// obtainRelease is obtain for the release as given.
func (r *run) obtainRelease(ctx context.Context) (*image, error) {
	st, err := r.openStore()
	if err != nil {
		return nil, err
	}
	if !st.usable {
		return r.refresh(ctx, st, nil)
	}
	unlock, err := st.Lock(ctx, st.key)
	if err != nil {
		switch {
		case errors.Is(err, cache.ErrUntrusted):
			r.noCache(st, err)
			return r.refresh(ctx, st, nil)
		case errors.Is(err, cache.ErrLockTimeout):
			return nil, fmt.Errorf("%w (--wait sets how long to wait)", err)
		}
		return nil, err
	}
	defer unlock()
	e, err := st.Lookup(st.key)
	if errors.Is(err, cache.ErrUntrusted) {
		r.noCache(st, err)
		return r.refresh(ctx, st, nil)
	}
	if err != nil {
		return nil, err
	}
	if e != nil && r.o.FlushCache {
		r.say("Flushing the cache...")
		if err := st.Flush(st.key); err != nil {
			return nil, err
		}
		e = nil
	}
	if r.o.Build != "" {
		// A pinned build is used from the cache only if the entry holds
		// exactly that build (refreshPinned).
		return r.refresh(ctx, st, e)
	}
	if e != nil {
		if r.o.ForceCache {
			r.say("Using image from local cache")
			return r.open(ctx, st, e)
		}
		expired, err := e.Expired(time.Now(), r.mode)
		if err != nil {
			return nil, err
		}
		if !expired {
			img, err := r.open(ctx, st, e)
			if err == nil {
				r.say("Using image from local cache")
				return img, nil
			}
			if !errors.Is(err, errUnverified) {
				return nil, err
			}
			r.warnOnce("cache-unverified", "Not using the cached copy in %s: %v; downloading it again", e.Dir, err)
			e = nil
		} else {
			r.say("The cached copy has expired, re-downloading...")
		}
	}
	return r.refresh(ctx, st, e)
}

// errUnverified marks a cached copy that does not verify (any more): it is
// downloaded again, not used.
var errUnverified = errors.New("it does not verify")

// open verifies the entry again and opens its rootfs for unpacking. Its
// evidence (SHA256SUMS and signatures, kept in its record) must verify
// with this run's keys and vouch for the meta tarball it holds and for the
// rootfs, whose bytes are checked as they are unpacked. Where the entry
// has an unpacked copy that this run may use, it is opened too.
func (r *run) open(ctx context.Context, st *store, e *cache.Entry) (*image, error) {
	img := &image{meta: e.MetaFiles()}
	if r.o.Validate {
		if !e.Trust.Verified {
			return nil, fmt.Errorf("%w: it was stored by a run without validation", errUnverified)
		}
		kr, err := r.keyring(ctx)
		if err != nil {
			return nil, err
		}
		ev := fetch.Evidence{SHA256SUMS: e.Trust.SHA256SUMS, SHA256SUMSSig: e.Trust.SHA256SUMSSig, Signatures: e.Trust.Signatures}
		check, err := fetch.Recheck(kr, ev, fetch.MetaFile, e.MetaSHA256)
		if err == nil && check != nil {
			check.Write(e.MetaTarball())
			err = check.Finish()
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errUnverified, err)
		}
		if img.check, err = fetch.Recheck(kr, ev, fetch.RootfsFile, e.RootfsSHA256); err != nil {
			return nil, fmt.Errorf("%w: %v", errUnverified, err)
		}
	}
	if _, ok := img.meta.Relevant("config", r.mode); !ok {
		return nil, compat.ErrNoConfig
	}
	var err error
	if img.rootfs, err = e.OpenRootfs(); err != nil {
		return nil, err
	}
	r.withUnpacked(st, e, img)
	return img, nil
}

// unpackedAllowed says whether this run may keep and use unpacked copies
// in the cache: root making a system container whose files stay root's
// (the cache is handed to mapped ids otherwise), not --cache-unpacked=false.
func (r *run) unpackedAllowed(st *store) bool {
	o := r.o
	return o.CacheUnpacked != cache.UnpackedNever && r.mode == compat.System && os.Geteuid() == 0 &&
		o.MappedUID < 0 && o.MappedGID < 0 && st.usable
}

// withUnpacked opens e's unpacked copy for img, and sets img up to keep
// one after the unpack where the entry has none (or a bad one). Called
// with the entry's lock held.
func (r *run) withUnpacked(st *store, e *cache.Entry, img *image) {
	if !r.unpackedAllowed(st) || (r.o.Validate && !sumsListRootfs(e.Trust.SHA256SUMS)) {
		// Where only the tarball's own signature vouches for the
		// image, every run reads the tarball: it unpacks it.
		return
	}
	if e.HasUnpacked() {
		u, err := e.OpenUnpacked()
		if err == nil {
			img.unpacked = u
		} else {
			r.warnOnce("unpacked", "Not using the unpacked copy of the image in %s: %v; unpacking the tarball", e.Dir, err)
			img.replace = true
		}
	}
	if st.readOnly != nil {
		return
	}
	key, sum, policy := st.key, e.RootfsSHA256, r.o.CacheUnpacked
	img.keep = func(ctx context.Context, rs *cache.RootfsStage, replace bool) error {
		// Keeping a copy is worth a short wait for the lock, no more.
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return st.KeepUnpacked(ctx, key, sum, rs, policy, replace)
	}
}

// sumsListRootfs says whether the SHA256SUMS kept with an entry names
// its rootfs tarball: then the signature over it vouches for the tarball
// without its bytes being read (fetch.Recheck).
func sumsListRootfs(sha256sums []byte) bool {
	sums, err := fetch.ParseSHA256SUMS(sha256sums)
	if err != nil {
		return false
	}
	_, err = fetch.LookupSHA256(sums, fetch.RootfsFile)
	return err == nil
}

// refresh asks the server for the image and downloads it unless the cached
// entry old (nil for none) already has that build.
func (r *run) refresh(ctx context.Context, st *store, old *cache.Entry) (*image, error) {
	o := r.o
	if o.Build != "" {
		return r.refreshPinned(ctx, st, old)
	}
	seen, err := r.seen(st)
	if err != nil {
		return nil, err
	}
	c, res, err := r.indexFrom(ctx)
	if err != nil {
		if old != nil && fetch.IsUnreachable(err) {
			r.warnOnce("offline", "The image server cannot be reached (%v); using the cached copy", err)
			img, oerr := r.open(ctx, st, old)
			if oerr != nil {
				return nil, fmt.Errorf("%w; and the cached copy cannot be used: %v", err, oerr)
			}
			r.say("Using image from local cache")
			return img, nil
		}
		return nil, err
	}
	entry, err := r.findEntry(ctx, c, res.Index)
	if err != nil {
		return nil, err
	}
	// Nothing older than what this host has seen from this server, unless
	// asked for: an attacker (or a stale mirror) replaying an old signed
	// index would hold back security fixes.
	if err := cache.CheckFresh(seen, entry.Build, res.SignedAt, o.AllowDowngrade); err != nil {
		return nil, fmt.Errorf("%w; --allow-downgrade accepts it", err)
	}
	if st.usable && st.readOnly == nil && o.Validate {
		if err := r.recordSeen(st, cache.Seen{Build: entry.Build, IndexSigned: res.SignedAt}); err != nil {
			return nil, err
		}
	}
	if old != nil && old.UpToDate(entry.Build, time.Now()) {
		img, err := r.open(ctx, st, old)
		if err == nil {
			r.say("The cache is already up to date")
			r.say("Using image from local cache")
			return img, nil
		}
		if !errors.Is(err, errUnverified) {
			return nil, err
		}
		r.warnOnce("cache-unverified", "Not using the cached copy in %s: %v; downloading it again", old.Dir, err)
	}
	img, err := r.download(ctx, st, c, entry, nil)
	if err == nil || !isNotFound(err) {
		return img, err
	}
	return r.fallBack(ctx, st, c, entry, old, err)
}

// recordSeen remembers s for the image under every server given: they
// are alternatives for one source, and what one of them offered binds
// them all (see seen).
func (r *run) recordSeen(st *store, s cache.Seen) error {
	for _, srv := range r.o.Servers {
		if err := st.RecordSeen(srv, st.key, s); err != nil {
			return err
		}
	}
	return nil
}

// seen is what the store remembers of the image from this server; the
// clock is not taken to be behind the newest index signature in it.
func (r *run) seen(st *store) (cache.Seen, error) {
	if !st.usable {
		return cache.Seen{}, nil
	}
	// The freshness rules hold across all the servers given together: a
	// server that lags behind another cannot take the run back.
	var seen cache.Seen
	for _, srv := range r.o.Servers {
		s, err := st.Seen(srv, st.key)
		if err != nil {
			return cache.Seen{}, err
		}
		if s.IndexSigned.After(seen.IndexSigned) {
			seen.IndexSigned = s.IndexSigned
		}
		if seen.Build == "" || (compat.ValidBuildID(s.Build) && s.Build > seen.Build) {
			seen.Build = s.Build
		}
	}
	r.clockFloor = seen.IndexSigned
	return seen, nil
}

// indexFrom downloads the index once per run (a run that starts again for
// a release alias reads the same one) from the first of the servers given
// that serves one (see eachServer). The client and r.o.Server are then
// that server's.
func (r *run) indexFrom(ctx context.Context) (*fetch.Client, *fetch.IndexResult, error) {
	if r.index != nil {
		return r.client, r.index, nil
	}
	err := r.eachServer(ctx, func(c *fetch.Client) (err error) {
		r.index, err = c.FetchIndex(ctx, r.mode)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return r.client, r.index, nil
}

// eachServer calls try with a client of each of the servers given, in
// order, until one succeeds: a server that cannot be reached, answers with
// what cannot be used or fails verification moves the run to the next,
// with a warning; any other error ends it. r.o.Server and r.client are
// then the last server tried.
func (r *run) eachServer(ctx context.Context, try func(*fetch.Client) error) error {
	var firstErr error
	for i, srv := range r.o.Servers {
		if r.o.Server != srv {
			r.o.Server, r.client = srv, nil
		}
		c, err := r.fetchClient(ctx)
		if err != nil {
			return err
		}
		if i == 0 {
			// In the shell template's order: the keyring, then this.
			r.say("Downloading the image index")
		}
		err = try(c)
		if err == nil {
			return nil
		}
		if firstErr == nil {
			firstErr = err
		}
		switch fetch.Classify(err) {
		case fetch.ClassUnreachable, fetch.ClassServer, fetch.ClassVerification:
		default:
			return err
		}
		if i+1 < len(r.o.Servers) {
			r.warnOnce("server "+srv, "%s", compat.PrintableLine(fmt.Sprintf("The image server %s failed (%v); trying %s", srv, err, r.o.Servers[i+1])))
		}
	}
	if len(r.o.Servers) > 1 {
		return fmt.Errorf("every image server failed; the first: %w", firstErr)
	}
	return firstErr
}

// stage is where a download goes: the cache's staging directory, or, when
// the cache cannot take it, a private temporary one beside the container
// (never /tmp: tmpfs and noexec /tmp broke the shell template). release
// removes a temporary stage and the entry made in it.
func (r *run) stage(st *store) (stage *cache.Stage, release func(), err error) {
	if st.keeps() {
		stage, err := st.Stage(st.key)
		if err != nil {
			return nil, nil, err
		}
		return stage, func() {}, nil
	}
	parent := r.o.Path
	if parent == "" {
		parent = filepath.Dir(filepath.Clean(r.o.Rootfs))
	}
	if st.readOnly != nil {
		r.warnOnce("readonly", "The cache %s is not writable (%v); downloading to %s without caching", st.Root, st.readOnly, parent)
	}
	stage, err = cache.NewTempStage(parent)
	if err != nil {
		return nil, nil, err
	}
	return stage, stage.Cleanup, nil
}

// download fetches the image, stores it with the evidence it was verified
// with, and returns it. The rootfs is unpacked while it downloads, into a
// private stage that is installed only once everything has verified. When
// want is not nil (a pinned build), the rootfs must also be the file the
// streams describe.
func (r *run) download(ctx context.Context, st *store, c *fetch.Client, entry compat.Entry, want *pinnedRootfs) (img *image, err error) {
	o := r.o
	stage, release, err := r.stage(st)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err == nil {
			return
		}
		if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
			// A partial download is worth keeping to resume, except
			// when it is what filled the disk.
			stage.Cleanup()
		} else {
			stage.Abort()
		}
		release()
	}()
	r.say("Downloading the rootfs")
	r.say("Downloading the metadata")
	var stream *streamUnpack
	tap := func(metaPath string) (fetch.Tap, error) {
		var err error
		if stream, err = r.startStreamUnpack(ctx, metaPath); err != nil {
			// Nothing is unpacked while downloading then; the meta
			// tarball's problem, if any, is named by the commit.
			return nil, nil
		}
		return stream, nil
	}
	got, err := c.FetchImageTap(ctx, entry, stage.Dir, tap)
	var staged *cache.RootfsStage
	if stream != nil {
		staged = stream.finish(err)
	}
	if err == nil && want != nil {
		source := "the download"
		if got.Verified {
			source = "the verified download"
		}
		err = want.check(got.Rootfs.SHA256, source)
		if err != nil && staged != nil {
			staged.Discard()
		}
	}
	if err != nil {
		return nil, err
	}
	trust := cache.Trust{Verified: got.Verified}
	if got.Verified {
		kr, err := r.keyring(ctx)
		if err != nil {
			return nil, err
		}
		trust.Keys = fingerprints(kr)
		trust.SHA256SUMS, trust.SHA256SUMSSig = got.Evidence.SHA256SUMS, got.Evidence.SHA256SUMSSig
		trust.Signatures = got.Evidence.Signatures
	}
	e, err := stage.CommitWith(entry.Build, r.mode, trust)
	if err != nil {
		if staged != nil {
			staged.Discard()
		}
		return nil, err
	}
	stage.Abort() // tidies the stage; the entry stays
	if st.keeps() {
		if o.MappedUID >= 0 || o.MappedGID >= 0 {
			// Like the shell template, a cache that cannot be handed
			// over is not an error: the container can still be made.
			_ = st.Chown(o.MappedUID, o.MappedGID)
		}
		r.say("The image cache is now ready")
	}
	img = &image{meta: e.MetaFiles(), staged: staged, release: release}
	if st.usable && st.readOnly == nil {
		r.withUnpacked(st, e, img)
	}
	if staged == nil {
		// Just verified as it downloaded: the record's sums are the
		// verified ones.
		if img.rootfs, err = e.OpenRootfs(); err != nil {
			release()
			return nil, err
		}
	}
	return img, nil
}

// roomFor refuses to unpack the tarball into dir, before anything is
// written, when dir's filesystem has less free space than the tar it
// holds: better said at once than at 90%.
func roomFor(dir string, rootfs *cache.RootfsReader) error {
	need, err := rootfs.Unpacked()
	if err != nil {
		return nil // the unpack says what is wrong with the tarball
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil
	}
	if free := int64(st.Bavail) * int64(st.Bsize); free < need {
		return fmt.Errorf("unpack rootfs: %s has %d MB free, and the image unpacks to %d MB: %w", filepath.Dir(dir), free>>20, need>>20, unix.ENOSPC)
	}
	return nil
}

// unpackInto unpacks the image's rootfs into a new private stage for the
// target and returns it; the rootfs is verified as it is read.
func (r *run) unpackInto(ctx context.Context, img *image) (*cache.RootfsStage, error) {
	if img.staged != nil {
		rs := img.staged
		img.staged = nil
		r.keepUnpacked(ctx, img, rs)
		return rs, nil
	}
	if img.unpacked != nil {
		rs, err := r.cloneInto(ctx, img)
		if err == nil || ctx.Err() != nil {
			return rs, err
		}
		r.warnOnce("unpacked", "Not using the unpacked copy of the image in %s: %v; unpacking the tarball", img.unpacked.Path(), err)
		if errors.Is(err, cache.ErrOtherFilesystem) {
			img.keep = nil // nor could another be made
		}
		img.replace = true
	}
	rs, err := cache.NewRootfsStage(r.o.Rootfs)
	if err != nil {
		return nil, err
	}
	if err := roomFor(rs.Dir, img.rootfs); err != nil {
		rs.Discard()
		return nil, err
	}
	var excludes []string
	if data, ok := img.meta.Relevant("excludes", r.mode); ok {
		excludes = compat.SplitLines(data)
	}
	uo := r.unpackOptions(excludes)
	bar := r.unpackBar(img.rootfs.Size())
	if bar != nil {
		uo.Progress = func(done, _ int64) { bar.Set64(done) }
	}
	var in io.Reader = img.rootfs
	if img.check != nil {
		in = io.TeeReader(img.rootfs, img.check)
	}
	err = rs.UnpackReader(ctx, in, uo)
	if err == nil && img.check != nil {
		err = img.check.Finish()
	}
	if bar != nil {
		if err == nil {
			bar.Finish()
		} else {
			bar.Exit()
		}
	}
	if err != nil {
		rs.Discard()
		return nil, err
	}
	r.keepUnpacked(ctx, img, rs)
	return rs, nil
}

// cloneInto makes a new stage for the target and clones the image's
// unpacked copy into it.
func (r *run) cloneInto(ctx context.Context, img *image) (*cache.RootfsStage, error) {
	rs, err := cache.NewRootfsStage(r.o.Rootfs)
	if err != nil {
		return nil, err
	}
	if err := rs.Clone(ctx, img.unpacked, cache.CloneOptions{}); err != nil {
		rs.Discard()
		return nil, err
	}
	if r.o.Verbose {
		r.say("Cloned the rootfs from the unpacked copy in %s", img.unpacked.Path())
	}
	return rs, nil
}

// keepUnpacked keeps the verified unpack in rs as the entry's unpacked
// copy where this run is set to. Not keeping one is never an error: the
// tarball stays, and --cache-unpacked hears why.
func (r *run) keepUnpacked(ctx context.Context, img *image, rs *cache.RootfsStage) {
	if img.keep == nil {
		return
	}
	err := img.keep(ctx, rs, img.replace)
	switch {
	case err == nil:
		if r.o.Verbose {
			r.say("Kept an unpacked copy of the image in the cache")
		}
	case r.o.CacheUnpacked != cache.UnpackedAlways && (errors.Is(err, cache.ErrNoReflink) || errors.Is(err, cache.ErrOtherFilesystem)):
		// The default keeps copies only where they share blocks.
	default:
		r.warnOnce("keep-unpacked", "No unpacked copy of the image is kept in the cache: %v", err)
	}
}
