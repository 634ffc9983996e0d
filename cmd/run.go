package cmd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/sys/unix"

	"github.com/lxc/lxc-download/cache"
	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
)

// run is the state of one invocation: the options, where to write, and what
// has been set up lazily (the network client is only built when a run needs
// the network, so a warm-cache run says nothing about keys).
type run struct {
	o      Options
	s      IO
	out    io.Writer // progress messages; io.Discard with --quiet
	mode   compat.Mode
	ns     compat.Namespace
	client *fetch.Client
	stdin  *bufio.Reader
	warned map[string]bool

	// rootfsEmpty: the rootfs held nothing when the run started, so on
	// failure it is emptied again, and it may be unpacked into while the
	// image downloads.
	rootfsEmpty bool
	// streamed: the rootfs was unpacked while it downloaded, and both
	// succeeded.
	streamed bool
	// unpackWarn takes the unpacker's warnings: a streamed unpack that was
	// given up is followed by one from the cache, which meets the same
	// entries and would say the same things again.
	unpackWarn *onceLines
}

// Run does what the options ask: list the images, or make sure the image is
// in the cache and unpack and configure it into the container.
func Run(ctx context.Context, o Options, s IO) (err error) {
	r := &run{o: o, s: s, out: s.Stdout, warned: map[string]bool{}, unpackWarn: &onceLines{w: s.Stderr}}
	if o.Quiet || (o.List && o.Format == "json") {
		r.out = io.Discard
	}
	if err := r.checkArgs(); err != nil {
		return err
	}
	r.ns = compat.CurrentNamespace()
	r.mode = r.ns.Mode()
	if r.ns == compat.InUserns && o.MappedUID < 0 && !o.List && !o.standalone() {
		return errors.New("In a user namespace without a map")
	}
	if o.List {
		_, err := r.list(ctx)
		return err
	}
	if err := r.chooseImage(ctx); err != nil {
		return err
	}
	if err := r.checkTarget(); err != nil {
		return err
	}
	// lxc-create removes a failed container; a standalone rootfs, or one
	// lxc-create is not watching, must not be left half-made either.
	r.rootfsEmpty = isEmptyDir(o.Rootfs)
	defer func() {
		if err != nil && r.rootfsEmpty {
			emptyDir(o.Rootfs)
		}
	}()
	img, err := r.cachedImage(ctx)
	if err != nil {
		return err
	}
	defer img.rootfs.Close()
	return r.create(ctx, img)
}

func (r *run) say(format string, args ...any) {
	fmt.Fprintf(r.out, format+"\n", args...)
}

// warnOnce writes a warning to stderr the first time it is raised.
func (r *run) warnOnce(key, format string, args ...any) {
	if r.warned[key] {
		return
	}
	r.warned[key] = true
	fmt.Fprintf(r.s.Stderr, "WARNING: "+format+"\n", args...)
}

// checkArgs checks the arguments lxc-create must pass.
func (r *run) checkArgs() error {
	o := r.o
	if o.List || o.standalone() {
		return nil
	}
	if o.Name == "" || o.Path == "" || o.Rootfs == "" {
		return errors.New("Please pass the name, path, and rootfs for the container")
	}
	// The name and paths become lines of the container's config (lxc.uts.name,
	// lxc.mount.fstab, the templates' LXC_* words): a newline would inject
	// lines of its own, other control characters would hide what is there.
	for _, a := range []struct{ flag, v string }{{"--name", o.Name}, {"--path", o.Path}, {"--rootfs", o.Rootfs}} {
		if compat.HasControl(a.v) {
			return fmt.Errorf("%s %q has a control character or is not UTF-8", a.flag, a.v)
		}
	}
	return nil
}

// chooseImage fills in the distribution, release and architecture: the
// host's architecture when only it is missing, else the interactive prompts
// of the shell template when a person is at a terminal.
func (r *run) chooseImage(ctx context.Context) error {
	o := &r.o
	if o.Dist != "" && o.Release != "" && o.Arch == "" {
		arch, err := compat.HostArch()
		if err != nil {
			return fmt.Errorf("no --arch given and this host's architecture is unknown: %w", err)
		}
		o.Arch = arch
		r.say("Using this host's architecture: %s", arch)
	}
	var missing []string
	for _, m := range []struct{ v, flag string }{{o.Dist, "--dist"}, {o.Release, "--release"}, {o.Arch, "--arch"}} {
		if m.v == "" {
			missing = append(missing, m.flag)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if !r.s.Interactive {
		return fmt.Errorf("missing %s (standard input is not a terminal, so they cannot be asked for; see --list)", strings.Join(missing, ", "))
	}
	if _, err := r.list(ctx); err != nil {
		return err
	}
	r.stdin = bufio.NewReader(r.s.Stdin)
	fmt.Fprintln(r.s.Stdout)
	for _, q := range []struct {
		prompt string
		v      *string
	}{{"Distribution", &o.Dist}, {"Release", &o.Release}, {"Architecture", &o.Arch}} {
		if *q.v != "" {
			continue
		}
		fmt.Fprintf(r.s.Stdout, "%s: \n", q.prompt)
		line, err := r.stdin.ReadString('\n')
		*q.v = strings.TrimSpace(line)
		if *q.v == "" {
			if err == nil {
				err = errors.New("empty answer")
			}
			return fmt.Errorf("no %s given: %w", strings.ToLower(q.prompt), err)
		}
	}
	fmt.Fprintln(r.s.Stdout)
	return nil
}

// list prints the index, filtered by what the options name.
func (r *run) list(ctx context.Context) (*compat.Index, error) {
	c, err := r.fetchClient(ctx)
	if err != nil {
		return nil, err
	}
	r.say("Downloading the image index")
	ix, err := c.Index(ctx, r.mode)
	if err != nil {
		return nil, err
	}
	q := compat.Query{Dist: r.o.Dist, Release: r.o.Release, Arch: r.o.Arch}
	if r.o.VariantSet {
		q.Variant = r.o.Variant
	}
	entries := ix.Filter(q)
	if r.o.List && r.o.Format == "json" {
		return ix, compat.WriteListJSON(r.s.Stdout, entries)
	}
	// The listing itself is the output of --list, so --quiet keeps it.
	fmt.Fprint(r.s.Stdout, "\n---\n")
	return ix, compat.WriteList(r.s.Stdout, entries)
}

// checkTarget makes sure the rootfs (and, for a container, its directory)
// exist before anything is downloaded.
func (r *run) checkTarget() error {
	if r.o.standalone() {
		if err := os.MkdirAll(r.o.Rootfs, 0o755); err != nil {
			return fmt.Errorf("create rootfs: %w", err)
		}
		return nil
	}
	if !isDir(r.o.Rootfs) {
		return fmt.Errorf("rootfs directory %s does not exist", r.o.Rootfs)
	}
	if !isDir(r.o.Path) {
		return fmt.Errorf("container directory %s does not exist", r.o.Path)
	}
	return nil
}

// fetchClient builds the network client on first use, setting up the
// keyring the way the shell template did before its first download.
func (r *run) fetchClient(ctx context.Context) (*fetch.Client, error) {
	if r.client != nil {
		return r.client, nil
	}
	fo := fetch.Options{
		Server:      r.o.Server,
		Version:     Version,
		Validate:    r.o.Validate,
		Warn:        r.s.Stderr,
		CACert:      r.o.CACert,
		Nameservers: r.o.Nameservers,
	}
	if r.o.Verbose {
		fo.Verbose = r.s.Stdout
	}
	if r.out != io.Discard {
		fo.Progress = r.s.Stdout
		fo.ProgressTerminal = r.s.StdoutTerminal
	}
	if v := r.s.getenv("LXC_DOWNLOAD_IDLE_TIMEOUT"); v != "" {
		// For very slow or very bad links (and the tests): how long an
		// attempt may receive nothing before it is retried.
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("LXC_DOWNLOAD_IDLE_TIMEOUT: want a duration such as 30s, not %q", v)
		}
		fo.IdleTimeout = d
	}
	if r.o.Validate {
		r.say("Setting up the GPG keyring")
		// The keyserver is reached like the image server: same proxies,
		// CA roots and timeouts.
		hc, err := fetch.NewHTTPClient(fo)
		if err != nil {
			return nil, err
		}
		if fo.Keyring, err = r.keyring(ctx, hc); err != nil {
			return nil, err
		}
	} else {
		r.warnOnce("novalidate", "Running without gpg validation!")
	}
	c, err := fetch.New(fo)
	if err != nil {
		return nil, err
	}
	r.client = c
	return c, nil
}

// keyring returns the keys an image must be signed with: the built-in key
// of images.linuxcontainers.org or the keys of --keyring, narrowed to
// --keyid; a --keyid that no local keyring holds, or any --keyid with an
// explicit --keyserver, is fetched from the keyserver.
func (r *run) keyring(ctx context.Context, hc *http.Client) (openpgp.EntityList, error) {
	var local openpgp.EntityList
	var err error
	if r.o.Keyring != "" {
		local, err = fetch.ReadKeyring(r.o.Keyring)
	} else {
		local, err = fetch.BuiltinKeyring()
	}
	if err != nil {
		return nil, err
	}
	if r.o.KeyID == "" {
		return local, nil
	}
	sel, selErr := fetch.SelectKey(local, r.o.KeyID)
	keyserver := r.o.Keyserver
	if keyserver == "" {
		if selErr == nil {
			return sel, nil
		}
		if !errors.Is(selErr, fetch.ErrNoKey) {
			return nil, selErr
		}
		keyserver = DefaultKeyserver
	}
	got, err := fetch.FetchKey(ctx, keyserver, r.o.KeyID, hc)
	if err == nil {
		return got, nil
	}
	if selErr == nil {
		r.warnOnce("keyserver", "Unable to fetch GPG key from keyserver (%v); using the local copy of %s", err, r.o.KeyID)
		return sel, nil
	}
	return nil, fmt.Errorf("Unable to fetch GPG key from keyserver: %w", err)
}

// cacheRoot is $LXC_CACHE_PATH, else the system or per-user default.
func (r *run) cacheRoot() (string, error) {
	if r.o.CachePath != "" {
		return r.o.CachePath, nil
	}
	if r.ns.CacheTarget() == compat.System {
		return filepath.Join(LocalStateDir, "cache", "lxc"), nil
	}
	if r.o.Home == "" {
		return "", errors.New("HOME is not set: cannot place the user cache (set LXC_CACHE_PATH)")
	}
	return filepath.Join(r.o.Home, ".cache", "lxc"), nil
}

// image is a snapshot of a cache entry taken under the cache lock: the
// rootfs tarball held open (a concurrent refresh may replace the entry, but
// not what this run reads) and the meta files it needs, in memory.
type image struct {
	rootfs        *os.File
	config        []byte
	fstab         []byte
	hasFstab      bool
	templates     []string
	excludes      []string
	createMessage []byte
	hasMessage    bool
}

// cachedImage makes sure the cache holds a current copy of the image
// (SPEC 6) and returns a snapshot of it.
func (r *run) cachedImage(ctx context.Context) (*image, error) {
	o := r.o
	root, err := r.cacheRoot()
	if err != nil {
		return nil, err
	}
	store := cache.Cache{Root: root, Warn: r.s.Stderr}
	key := cache.Key{Dist: o.Dist, Release: o.Release, Arch: o.Arch, Variant: o.Variant}
	// A cache that cannot be written (a read-only /var, another user's
	// cache) still serves what it holds; a download then goes next to the
	// container instead, and is not kept.
	var readOnly error
	if err := os.MkdirAll(root, 0o755); err != nil {
		readOnly = err
	} else {
		readOnly = store.Writable()
	}
	unlock, err := store.Lock(ctx, key)
	if err != nil {
		return nil, err
	}
	defer unlock()

	e, err := store.Lookup(key)
	if err != nil {
		return nil, err
	}
	if e != nil && o.FlushCache {
		r.say("Flushing the cache...")
		if err := store.Flush(key); err != nil {
			return nil, err
		}
		e = nil
	}
	now := time.Now()
	useCache := false
	if e != nil {
		if o.ForceCache {
			useCache = true
		} else if expired, err := e.Expired(now, r.mode); err != nil {
			return nil, err
		} else if expired {
			r.say("The cached copy has expired, re-downloading...")
		} else {
			useCache = true
		}
	}

	if useCache {
		r.say("Using image from local cache")
		return r.snapshot(e)
	}
	e, cleanup, err := r.refresh(ctx, store, key, e, now, readOnly)
	if err != nil {
		return nil, err
	}
	// The snapshot holds the rootfs open and the meta files in memory, so
	// a temporary entry can go as soon as it is taken.
	defer cleanup()
	return r.snapshot(e)
}

// stage is where a download goes: the cache's staging directory, or, when
// the cache cannot be written, a temporary one beside the container (never
// /tmp: tmpfs and noexec /tmp broke the shell template). cleanup removes a
// temporary stage and the entry made in it.
func (r *run) stage(store cache.Cache, key cache.Key, readOnly error) (st *cache.Stage, cleanup func(), err error) {
	if readOnly == nil {
		st, err := store.Stage(key)
		if err != nil {
			return nil, nil, err
		}
		return st, func() {}, nil
	}
	parent := r.o.Path
	if parent == "" {
		parent = filepath.Dir(filepath.Clean(r.o.Rootfs))
	}
	r.warnOnce("readonly", "The cache %s is not writable (%v); downloading to %s without caching", store.Root, readOnly, parent)
	st, err = cache.NewTempStage(parent)
	if err != nil {
		return nil, nil, err
	}
	return st, st.Cleanup, nil
}

// refresh asks the server for the image and downloads it unless the cached
// entry old already has that build. cleanup releases a temporary entry
// (see stage) once the caller has taken what it needs from it.
func (r *run) refresh(ctx context.Context, store cache.Cache, key cache.Key, old *cache.Entry, now time.Time, readOnly error) (e *cache.Entry, cleanup func(), err error) {
	o := r.o
	cleanup = func() {}
	c, err := r.fetchClient(ctx)
	if err != nil {
		return nil, nil, err
	}
	r.say("Downloading the image index")
	ix, err := c.Index(ctx, r.mode)
	if err != nil {
		if old != nil && fetch.IsUnreachable(err) {
			r.warnOnce("offline", "The image server cannot be reached (%v); using the cached copy", err)
			r.say("Using image from local cache")
			return old, cleanup, nil
		}
		return nil, nil, err
	}
	entry, err := ix.Find(compat.Query{Dist: o.Dist, Release: o.Release, Arch: o.Arch, Variant: o.Variant})
	if err != nil {
		return nil, nil, err
	}
	// The 30-day cap applies even when the build is unchanged: a copy that
	// old is fetched again, whatever the index says.
	if old != nil && old.BuildID == entry.Build && now.Sub(old.Fetched) < cache.MaxAge {
		r.say("The cache is already up to date")
		r.say("Using image from local cache")
		return old, cleanup, nil
	}

	st, release, err := r.stage(store, key, readOnly)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err == nil {
			return
		}
		if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
			// A partial download is worth keeping to resume, except
			// when it is what filled the disk.
			st.Cleanup()
		} else {
			st.Abort()
		}
		release()
	}()
	r.say("Downloading the rootfs")
	r.say("Downloading the metadata")
	var stream *streamUnpack
	tap := func(metaPath string) (fetch.Tap, error) {
		if !r.rootfsEmpty {
			// What a failed stream unpacked could not be told apart
			// from what was there before.
			return nil, nil
		}
		var err error
		if stream, err = r.startStreamUnpack(ctx, metaPath); err != nil {
			// Commit names what is wrong with the meta tarball.
			return nil, nil
		}
		return stream, nil
	}
	_, err = c.FetchImageTap(ctx, entry, st.Dir, tap)
	if stream != nil {
		r.streamed = stream.finish(err)
		if !r.streamed {
			emptyDir(o.Rootfs)
		}
	}
	if err != nil {
		return nil, nil, err
	}
	if e, err = st.Commit(entry.Build, r.mode); err != nil {
		return nil, nil, err
	}
	st.Abort() // tidies the stage; the entry stays
	if readOnly == nil && (o.MappedUID >= 0 || o.MappedGID >= 0) {
		// Like the shell template, a cache that cannot be handed over is
		// not an error: the container can still be made.
		_ = store.Chown(o.MappedUID, o.MappedGID)
	}
	if readOnly == nil {
		r.say("The image cache is now ready")
	}
	return e, release, nil
}

// snapshot opens the entry's rootfs and reads the meta files a run needs.
func (r *run) snapshot(e *cache.Entry) (*image, error) {
	m := e.Meta(r.mode)
	img := &image{}
	var err error
	var ok bool
	if img.config, ok, err = m.Read("config"); err != nil {
		return nil, err
	} else if !ok {
		return nil, errors.New("meta tarball is missing the configuration file")
	}
	if img.fstab, img.hasFstab, err = m.Read("fstab"); err != nil {
		return nil, err
	}
	if img.createMessage, img.hasMessage, err = m.Read("create-message"); err != nil {
		return nil, err
	}
	if img.templates, err = m.Lines("templates"); err != nil {
		return nil, err
	}
	if img.excludes, err = m.Lines("excludes"); err != nil {
		return nil, err
	}
	if img.rootfs, err = os.Open(e.Rootfs()); err != nil {
		return nil, fmt.Errorf("open cached rootfs: %w", err)
	}
	return img, nil
}

// create unpacks the image into the rootfs and writes the container's
// configuration (SPEC 7). If the rootfs was empty and anything fails, it is
// emptied again so no half-made tree is left behind.
func (r *run) create(ctx context.Context, img *image) error {
	o := r.o
	r.say("Unpacking the rootfs")
	if !r.streamed {
		uo := r.unpackOptions(img.excludes)
		bar := r.unpackBar(img.rootfs)
		if bar != nil {
			uo.Progress = func(done, _ int64) { bar.Set64(done) }
		}
		err := cache.Unpack(ctx, img.rootfs, o.Rootfs, uo)
		if bar != nil {
			if err == nil {
				bar.Finish()
			} else {
				bar.Exit()
			}
		}
		if err != nil {
			return err
		}
	}
	pts, err := securejoin.SecureJoin(o.Rootfs, "dev/pts")
	if err != nil {
		return fmt.Errorf("create dev/pts: %w", err)
	}
	if err := os.MkdirAll(pts, 0o755); err != nil {
		return fmt.Errorf("create dev/pts: %w", err)
	}
	if o.standalone() {
		return nil
	}
	return r.configure(img)
}

// unpackBar is the progress bar of an unpack from the cache, on a terminal
// only: in a log, "Unpacking the rootfs" says all there is. (A rootfs
// unpacked while it downloads is covered by the download's bar.)
func (r *run) unpackBar(archive *os.File) *progressbar.ProgressBar {
	if r.out == io.Discard || !r.s.StdoutTerminal {
		return nil
	}
	fi, err := archive.Stat()
	if err != nil {
		return nil
	}
	return progressbar.NewOptions64(fi.Size(),
		progressbar.OptionSetWriter(r.s.Stdout),
		progressbar.OptionSetDescription("unpacking"),
		progressbar.OptionShowBytes(true),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionFullWidth(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(r.s.Stdout) }))
}

// unpackOptions are the options of every unpack of this run.
func (r *run) unpackOptions(excludes []string) cache.UnpackOptions {
	return cache.UnpackOptions{Excludes: excludes, Userns: r.mode == compat.User, Warn: r.unpackWarn}
}

// configure writes LXC_PATH/config and fstab and applies the image's
// templates (SPEC 7.2 to 7.7).
func (r *run) configure(img *image) error {
	o := r.o
	tc, hd := lxcDirs(r.s.getenv)
	vars := compat.Vars{Name: o.Name, Path: o.Path, Rootfs: o.Rootfs, TemplateConfig: tc, HookDir: hd}

	configPath := filepath.Join(o.Path, "config")
	current, err := os.ReadFile(configPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read container config: %w", err)
	}
	config := compat.RewriteConfig(current, img.config, img.hasFstab, o.Path, o.Name)
	if err := replaceFile(configPath, vars.Substitute(config), 0o640); err != nil {
		return fmt.Errorf("write container config: %w", err)
	}
	owned := []string{configPath}
	if img.hasFstab {
		fstabPath := filepath.Join(o.Path, "fstab")
		if err := replaceFile(fstabPath, vars.Substitute(img.fstab), 0o644); err != nil {
			return fmt.Errorf("write container fstab: %w", err)
		}
		owned = append(owned, fstabPath)
	}
	for _, t := range img.templates {
		if err := rewriteInRootfs(o.Rootfs, t, vars.Substitute); err != nil {
			return fmt.Errorf("apply template %s: %w", t, err)
		}
	}
	if err := rewriteInRootfs(o.Rootfs, "etc/init/tty.conf", compat.FixMingetty); err != nil {
		return fmt.Errorf("fix mingetty: %w", err)
	}
	if o.MappedUID >= 0 || o.MappedGID >= 0 {
		for _, p := range owned {
			// As in the shell template, failing to hand over is not fatal.
			_ = os.Lchown(p, o.MappedUID, o.MappedGID)
		}
	}
	if img.hasMessage {
		fmt.Fprint(r.s.Stdout, "\n---\n")
		// The image's own words, shown on the user's terminal.
		r.s.Stdout.Write(compat.Printable(img.createMessage))
	}
	return nil
}

// rewriteInRootfs applies fn to the regular file rel inside rootfs, if it
// exists. The path is resolved inside the rootfs (a template list naming a
// symlink to /etc/shadow must not touch the host), and the file is written in
// place so its owner, mode, xattrs and hard links stay as unpacked.
func rewriteInRootfs(rootfs, rel string, fn func([]byte) []byte) error {
	p, err := securejoin.SecureJoin(rootfs, rel)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_RDWR|unix.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ELOOP) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	out := fn(data)
	if bytes.Equal(out, data) {
		return nil
	}
	if _, err := f.WriteAt(out, 0); err != nil {
		return err
	}
	if err := f.Truncate(int64(len(out))); err != nil {
		return err
	}
	return f.Close()
}

// replaceFile writes data to path through a temporary file and a rename, so
// an interrupted run leaves the old file or the new one, never half of it.
// An existing file's mode and owner are kept.
func replaceFile(path string, data []byte, mode os.FileMode) error {
	uid, gid := -1, -1
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*unix.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if uid >= 0 {
		_ = tmp.Chown(uid, gid)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func isEmptyDir(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) == 0
}

// emptyDir removes everything inside p, keeping p itself (lxc-create made it
// and removes it when the template fails).
func emptyDir(p string) {
	f, err := os.Open(p)
	if err != nil {
		return
	}
	names, _ := f.Readdirnames(-1)
	f.Close()
	for _, n := range names {
		os.RemoveAll(filepath.Join(p, n))
	}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// errorText is the text of the ERROR line for err: one line, without the
// control characters that a server's answer quoted in it may hold.
func errorText(err error) string {
	if errors.Is(err, context.Canceled) {
		return "interrupted"
	}
	return compat.PrintableLine(err.Error())
}
