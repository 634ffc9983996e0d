package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/lxc/lxc-download/compat"
)

// The files of an image that FetchImage downloads.
const (
	MetaFile   = "meta.tar.xz"
	RootfsFile = "rootfs.tar.xz"
)

// File is a downloaded and verified file.
type File struct {
	// Name is the file's name on the server, e.g. "rootfs.tar.xz".
	Name string
	// Path is where it is: DIR/Name.
	Path string
	// Size is its length in bytes.
	Size int64
	// SHA256 is its digest in lower-case hex, computed as it arrived.
	SHA256 string
}

// Image is what FetchImage downloaded.
type Image struct {
	Meta, Rootfs File
	// Verified is set when the files were checked against the keyring
	// (Options.Validate).
	Verified bool
	// Evidence is what they were verified with, to keep beside a cached
	// copy so that it can be checked again on every use (Recheck).
	Evidence Evidence
}

// Evidence is the signed material an image's files were verified with:
// the image directory's SHA256SUMS with its signature, where the server
// publishes them, and the files' own detached signatures, where it
// publishes those. Unsigned sums are not evidence and are left out.
type Evidence struct {
	SHA256SUMS, SHA256SUMSSig []byte
	// Signatures are FILE.asc by file name ("rootfs.tar.xz").
	Signatures map[string][]byte
}

// trust is what a file must match: its own detached signature and/or its
// line of a signed SHA256SUMS.
type trust struct {
	sig    []byte
	sha256 string
}

// FetchImage downloads the meta and rootfs tarballs of entry into dir, both
// at once, and, with Validate, verifies them through whatever the server
// publishes: FILE.asc and/or SHA256SUMS with SHA256SUMS.asc (both must hold
// where both exist; at least one must). Each file is written to
// dir/NAME.partial and renamed to dir/NAME only when both are verified; a
// file that fails verification is deleted, while one that was interrupted
// is kept, with its dir/NAME.partial.info, for the next call to resume.
// dir must exist; nothing is written outside it.
func (c *Client) FetchImage(ctx context.Context, entry compat.Entry, dir string) (*Image, error) {
	return c.FetchImageTap(ctx, entry, dir, nil)
}

// Tap follows the rootfs tarball while it downloads, so that a caller can
// unpack it at the same time (see FetchImageTap).
type Tap interface {
	// Data receives the file's next bytes, in order from byte 0: a resumed
	// download's bytes from disk first. p is not used after Data returns.
	// Data may block; the download waits.
	Data(p []byte)
	// Restart says the download starts over from byte 0: everything Data
	// gave so far is void.
	Restart()
}

// FetchImageTap is FetchImage with the rootfs followed as it arrives.
// Both files download at once; tap is called, as soon as the meta tarball
// is verified, with the path of that verified copy (it is renamed when
// FetchImageTap returns), and returns the Tap that follows the rootfs
// download, or nil for none. Until then the rootfs download waits before
// handing on its first bytes: the Tap's owner needs the meta files (the
// excludes) first, and the meta tarball is a few kilobytes. A nil tap
// makes it FetchImage.
//
// The Tap sees the rootfs before it is verified: whatever the caller makes
// of the bytes must be thrown away unless FetchImageTap returns no error.
func (c *Client) FetchImageTap(ctx context.Context, entry compat.Entry, dir string, tap func(metaPath string) (Tap, error)) (*Image, error) {
	names := []string{MetaFile, RootfsFile}
	var trusts map[string]trust
	var evidence Evidence
	if c.o.Validate {
		var err error
		if trusts, evidence, err = c.imageTrust(ctx, entry, names); err != nil {
			return nil, removed(entry, err)
		}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ui := newProgressUI(c.o.Progress, c.o.ProgressTerminal)
	files := make([]File, len(names))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
			// The other download stops too, keeping what it has for
			// the next run.
			cancel(err)
		}
	}
	var rootfsTap *pendingTap
	if tap != nil {
		rootfsTap = &pendingTap{ctx: ctx, ready: make(chan struct{})}
	}
	for i, name := range names {
		var t Tap
		if name == RootfsFile && rootfsTap != nil {
			t = rootfsTap
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := c.fetchFile(ctx, entry.File(name), name, dir, trusts[name], ui, t)
			if name == MetaFile && rootfsTap != nil {
				if err == nil {
					rootfsTap.t, err = tap(f.Path)
				}
				close(rootfsTap.ready)
			}
			if err != nil {
				fail(err)
				return
			}
			files[i] = f
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, removed(entry, firstErr)
	}
	for i := range files {
		final := filepath.Join(dir, files[i].Name)
		if err := os.Rename(files[i].Path, final); err != nil {
			return nil, fmt.Errorf("store %s: %w", files[i].Name, err)
		}
		os.Remove(files[i].Path + ".info")
		files[i].Path = final
	}
	return &Image{Meta: files[0], Rootfs: files[1], Verified: c.o.Validate, Evidence: evidence}, nil
}

// removed makes a failure to get a file of entry (an image the index
// names) that is a 404 or 410 a *RemovedError.
func removed(entry compat.Entry, err error) error {
	var re *RemovedError
	if Classify(err) != ClassNotFound || errors.As(err, &re) {
		return err
	}
	return &RemovedError{Dist: entry.Dist, Release: entry.Release, Arch: entry.Arch, Variant: entry.Variant, Build: entry.Build, Err: err}
}

// pendingTap stands in for the rootfs's Tap until the meta tarball is
// verified and the caller has made the real one. Data and Restart wait
// for that; if the run is cancelled first (the meta download failed), the
// bytes go nowhere and nothing is ever handed on, since the caller's Tap
// would have seen a stream with a hole in it.
type pendingTap struct {
	ctx   context.Context
	ready chan struct{} // closed once t is set, or will never be
	t     Tap
	lost  bool // bytes were dropped: the stream is not whole any more
}

// wait reports whether calls may be handed on to the real Tap.
func (p *pendingTap) wait() bool {
	if p.lost {
		return false
	}
	select {
	case <-p.ready:
	case <-p.ctx.Done():
		// ready may be closed too; the cancellation wins, so that a
		// download that is stopping does not block on the Tap.
		p.lost = true
		return false
	}
	if p.t == nil {
		p.lost = true
		return false
	}
	return true
}

func (p *pendingTap) Data(b []byte) {
	if p.wait() {
		p.t.Data(b)
	}
}

func (p *pendingTap) Restart() {
	if p.wait() {
		p.t.Restart()
	}
}

// imageTrust fetches what the image's files are verified with: the signed
// SHA256SUMS of the image directory and each file's detached signature.
// These small files are taken from the primary server only, all at once:
// on a distant server each is a round trip, which costs more than its
// bytes.
func (c *Client) imageTrust(ctx context.Context, entry compat.Entry, names []string) (map[string]trust, Evidence, error) {
	paths := []smallFile{
		{entry.File("SHA256SUMS"), maxSumsSize},
		{entry.File("SHA256SUMS.asc"), maxSignatureSize},
	}
	for _, name := range names {
		paths = append(paths, smallFile{entry.File(name + ".asc"), maxSignatureSize})
	}
	got := c.getSmallAll(ctx, paths)
	gone := true
	for _, r := range got {
		gone = gone && isNotFound(r.err)
	}
	if gone {
		// Not one file that vouches for the image: its directory is
		// gone, which no signature problem should hide.
		return nil, Evidence{}, got[0].err
	}

	trusts := map[string]trust{}
	var ev Evidence
	var sums map[string]string
	sumsData, err := got[0].data, got[0].err
	switch {
	case isNotFound(err):
	case err != nil:
		return nil, Evidence{}, err
	default:
		sig, err := got[1].data, got[1].err
		switch {
		case isNotFound(err):
			// Unsigned sums prove nothing; the files' own signatures
			// must do.
		case err != nil:
			return nil, Evidence{}, err
		default:
			if _, err := verifyDetached(c.o.Keyring, "SHA256SUMS", sumsData, sig, c.o.now); err != nil {
				return nil, Evidence{}, err
			}
			if sums, err = ParseSHA256SUMS(sumsData); err != nil {
				return nil, Evidence{}, err
			}
			ev.SHA256SUMS, ev.SHA256SUMSSig = sumsData, sig
		}
	}
	for i, name := range names {
		var t trust
		var missing error
		if sums != nil {
			if t.sha256, err = LookupSHA256(sums, name); err != nil {
				missing = err
			}
		}
		sig, err := got[2+i].data, got[2+i].err
		switch {
		case isNotFound(err):
			if t.sha256 == "" {
				if missing == nil {
					missing = err
				}
				// The file may be there, unsigned: not "removed".
				return nil, Evidence{}, withClass(fmt.Errorf("no signature for %s: %w", name, missing), ClassVerification, KindNone)
			}
		case err != nil:
			return nil, Evidence{}, err
		default:
			t.sig = sig
			if ev.Signatures == nil {
				ev.Signatures = map[string][]byte{}
			}
			ev.Signatures[name] = sig
		}
		trusts[name] = t
	}
	return trusts, ev, nil
}

// partialInfo is the sidecar of a partial download: what a later run needs
// to resume it safely.
type partialInfo struct {
	// URL is the file's address on the primary server over HTTPS,
	// whatever served the bytes.
	URL string `json:"url"`
	// Validator is the strong ETag or Last-Modified of the bytes held,
	// for If-Range.
	Validator string `json:"validator"`
	// Size is the file's full size; -1 unknown.
	Size int64 `json:"size"`
}

// fileSink writes a download to its partial file while it is hashed and
// verified.
type fileSink struct {
	f     *os.File
	n     int64
	check *Check    // nil without validation
	sum   hash.Hash // when there is no check
	tap   Tap       // nil when nobody follows the download
}

func (s *fileSink) Write(p []byte) (int, error) {
	if _, err := s.f.WriteAt(p, s.n); err != nil {
		// An *os.PathError already names the operation and the file.
		return 0, &localError{err}
	}
	if s.check != nil {
		s.check.Write(p)
	} else {
		s.sum.Write(p)
	}
	if s.tap != nil {
		s.tap.Data(p)
	}
	s.n += int64(len(p))
	return len(p), nil
}

func (s *fileSink) Len() int64 { return s.n }

func (s *fileSink) Reset() error {
	if err := s.f.Truncate(0); err != nil {
		return &localError{err}
	}
	s.n = 0
	if s.check != nil {
		s.check.Reset()
	} else {
		s.sum.Reset()
	}
	if s.tap != nil {
		s.tap.Restart()
	}
	return nil
}

func (s *fileSink) digest() string {
	if s.check != nil {
		return s.check.SHA256()
	}
	return hex.EncodeToString(s.sum.Sum(nil))
}

// fetchFile downloads path into dir/name.partial and verifies it. A copy
// that fails verification gets one more chance, from the primary server
// and from the first byte, when it was not all fetched from the primary
// server in this run (a mirror served it, or a previous run left part of
// it).
func (c *Client) fetchFile(ctx context.Context, path, name, dir string, tr trust, ui *progressUI, tap Tap) (f File, err error) {
	partial := filepath.Join(dir, name+".partial")
	infoPath := partial + ".info"
	canonical := c.urlFor(path)
	prog := ui.file(name)
	defer func() { prog.finish(err == nil) }()

	s := &fileSink{tap: tap}
	if c.o.Validate {
		if s.check, err = newCheck(name, c.o.Keyring, tr.sig, tr.sha256, c.o.now); err != nil {
			return File{}, err
		}
	} else {
		s.sum = sha256.New()
	}
	t := &transfer{c: c, path: path, name: name, sink: s, total: -1, progress: prog}
	t.limit, t.limitOption = c.o.MaxRootfsSize, "--max-rootfs-size"
	if name == MetaFile {
		t.limit, t.limitOption = c.o.MaxMetaSize, "--max-meta-size"
	}
	var info partialInfo
	s.f, info, err = openPartial(partial, infoPath, canonical, s)
	if err != nil {
		return File{}, err
	}
	t.disk = newDiskGuard(s.f, &c.o)
	defer func() {
		if s.f != nil {
			s.f.Close()
		}
	}()
	earlier := s.n > 0
	if earlier {
		t.validator, t.total = info.Validator, info.Size
	}
	var written partialInfo
	t.onResponse = func() error {
		now := partialInfo{URL: canonical, Validator: t.validator, Size: t.total}
		if now == written {
			return nil
		}
		written = now
		return writeInfo(infoPath, now)
	}

	for retried := false; ; retried = true {
		if !(earlier && t.total >= 0 && s.n == t.total) {
			if err := t.run(ctx); err != nil {
				if isDiskFull(err) || isLimit(err) {
					// Keeping the bytes would keep the disk full, or
					// keep what is not the file.
					s.f.Close()
					s.f = nil
					removePartial(partial)
				}
				return File{}, err
			}
		}
		verr := error(nil)
		if s.check != nil {
			verr = s.check.Finish()
		}
		if verr == nil {
			break
		}
		if retried || (t.mirror == "" && !earlier) {
			s.f.Close()
			s.f = nil
			removePartial(partial)
			return File{}, verr
		}
		if t.mirror != "" {
			c.warnOnce("mirror-bad "+t.mirror+" "+path,
				"Mirror %s served a copy of %s that failed verification (%v); downloading it from %s",
				t.mirror, name, verr, c.server)
		}
		if err := s.Reset(); err != nil {
			return File{}, err
		}
		os.Remove(infoPath)
		written = partialInfo{}
		t.primary, t.mirror, t.validator, t.total = true, "", "", -1
		earlier = false
	}
	if err := s.f.Sync(); err != nil {
		return File{}, &localError{err}
	}
	return File{Name: name, Path: partial, Size: s.n, SHA256: s.digest()}, nil
}

// openPartial opens dir/NAME.partial. A partial file that a previous run
// left for the same URL, with a validator to resume it safely, is kept and
// fed to the sink's hashes; anything else is started afresh.
func openPartial(partial, infoPath, canonical string, s *fileSink) (*os.File, partialInfo, error) {
	var info partialInfo
	if data, err := os.ReadFile(infoPath); err == nil && json.Unmarshal(data, &info) == nil &&
		info.URL == canonical && info.Validator != "" {
		if f, err := os.OpenFile(partial, os.O_RDWR|syscall.O_NOFOLLOW, 0); err == nil {
			fi, err := f.Stat()
			if err == nil && fi.Mode().IsRegular() && fi.Size() > 0 && (info.Size < 0 || fi.Size() <= info.Size) {
				s.f = f
				if _, err := io.Copy(rehashWriter{s}, io.NewSectionReader(f, 0, fi.Size())); err == nil {
					return f, info, nil
				}
				s.n = 0
				if s.tap != nil {
					s.tap.Restart()
				}
			}
			f.Close()
		}
	}
	os.Remove(infoPath)
	f, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, partialInfo{}, &localError{err}
	}
	if s.check != nil {
		s.check.Reset()
	} else {
		s.sum.Reset()
	}
	if s.tap != nil && s.n > 0 {
		s.tap.Restart()
	}
	s.n = 0
	return f, partialInfo{Size: -1}, nil
}

// rehashWriter is the sink as seen while an existing partial file is read
// back: the bytes are hashed and counted but not written again.
type rehashWriter struct{ s *fileSink }

func (w rehashWriter) Write(p []byte) (int, error) {
	if w.s.check != nil {
		w.s.check.Write(p)
	} else {
		w.s.sum.Write(p)
	}
	if w.s.tap != nil {
		w.s.tap.Data(p)
	}
	w.s.n += int64(len(p))
	return len(p), nil
}

func writeInfo(path string, info partialInfo) error {
	data, err := json.Marshal(info)
	if err != nil {
		return &localError{err}
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return &localError{err}
	}
	return nil
}

func removePartial(partial string) {
	os.Remove(partial)
	os.Remove(partial + ".info")
}

func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
