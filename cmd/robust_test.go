package cmd_test

// Robustness tests of issue 4, end to end: the real binary, run as a
// subprocess the way lxc-create runs it, against the fault-injecting image
// server of fetch/fetchtest. The fetch and cache packages test each
// mechanism on its own; these prove that the program as shipped resumes,
// retries, locks, survives kill -9 and a full disk, falls back to a stale
// cache, and keeps its output fit for logs.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// The big image: DefaultImage with a synthetic rootfs of a few MB in
// several xz blocks, so that a download takes long enough to interrupt and
// does not fit a 1 MiB disk. Compressing it takes seconds here, so it is
// made once per test binary and put on each test's server with SetSigned.
var (
	bigOnce  sync.Once
	bigFiles []fetchtest.File
	bigXZ    []byte
	bigErr   error
)

func bigRootfs(t *testing.T) ([]fetchtest.File, []byte) {
	t.Helper()
	bigOnce.Do(func() {
		img := fetchtest.DefaultImage()
		img.Rootfs = fetchtest.SyntheticRootfs(700, 6<<20, 4)
		img.BlockSize = 1 << 20 // about 6 blocks, decoded in parallel
		bigFiles = img.Rootfs
		start := time.Now()
		bigXZ, bigErr = fetchtest.RootfsTarball(img)
		t.Logf("big rootfs.tar.xz: %d bytes, made in %v", len(bigXZ), time.Since(start).Round(time.Millisecond))
	})
	if bigErr != nil {
		t.Fatal(bigErr)
	}
	// The progress and disk-full tests need more than 1 MiB on the wire.
	if len(bigXZ) < 5<<18 {
		t.Fatalf("big rootfs.tar.xz is only %d bytes", len(bigXZ))
	}
	return bigFiles, bigXZ
}

// rootfsPath is the server path of img's rootfs tarball.
func rootfsPath(img fetchtest.Image) string { return fetchtest.ImageDir(img) + "rootfs.tar.xz" }

// defaultRootfsPath is that of the image the env's server starts with.
var defaultRootfsPath = rootfsPath(fetchtest.DefaultImage())

// newBigEnv is newEnv whose debian image has the big rootfs.
func newBigEnv(t *testing.T) *env {
	t.Helper()
	_, xz := bigRootfs(t)
	e := newEnv(t)
	e.srv.SetSigned(defaultRootfsPath, xz)
	return e
}

// proc is a run of the binary in the background.
type proc struct {
	cmd      *exec.Cmd
	out, err bytes.Buffer
	done     chan struct{}
	res      result
}

// start starts the binary for the current container with lxc-create's
// arguments, then args; extraEnv is added to the env's environment.
func (e *env) start(extraEnv []string, args ...string) *proc {
	e.t.Helper()
	full := append([]string{"--path=" + e.path, "--name=" + e.name, "--rootfs=" + e.rootfs}, args...)
	p := &proc{cmd: exec.Command(binary, full...), done: make(chan struct{})}
	p.cmd.Env = append(e.environ(), extraEnv...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.err
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		p.res = result{code: p.cmd.ProcessState.ExitCode(), stdout: p.out.String(), stderr: p.err.String()}
		if err != nil && p.res.code == 0 {
			p.res.code = -1
		}
		close(p.done)
	}()
	e.t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the run to end, killing it after limit: then ok is false.
func (p *proc) wait(limit time.Duration) (r result, ok bool) {
	select {
	case <-p.done:
		return p.res, true
	case <-time.After(limit):
		p.cmd.Process.Kill()
		<-p.done
		return p.res, false
	}
}

// runEnv runs the binary like e.run with extra environment, failing the
// test if it takes longer than limit.
func (e *env) runEnv(limit time.Duration, extraEnv []string, args ...string) result {
	e.t.Helper()
	r, ok := e.start(extraEnv, args...).wait(limit)
	if !ok {
		e.t.Fatalf("the run did not end within %v; killed:\n%s", limit, r)
	}
	return r
}

// rangeStart is the first byte a "bytes=N-" Range header asks for, or -1.
func rangeStart(h string) int64 {
	s, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return -1
	}
	s, ok = strings.CutSuffix(s, "-")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// resumedFrom is the largest start of a Range request among reqs, 0 if none
// asked for a range.
func resumedFrom(reqs []fetchtest.Request) int64 {
	var from int64
	for _, r := range reqs {
		from = max(from, rangeStart(r.Range))
	}
	return from
}

// fileBytes is how many bytes of the file itself reqs were sent: the
// bodies of 200 and 206 answers (not those of errors, such as a 416's).
func fileBytes(reqs []fetchtest.Request) int64 {
	var n int64
	for _, r := range reqs {
		if r.Status == 200 || r.Status == 206 || r.Status == 0 {
			n += r.Bytes
		}
	}
	return n
}

func logOf(reqs []fetchtest.Request) string {
	var b strings.Builder
	for _, r := range reqs {
		fmt.Fprintf(&b, "  %s status=%d range=%q bytes=%d\n", r.Path, r.Status, r.Range, r.Bytes)
	}
	return b.String()
}

// sameFile reports whether the file at p holds exactly want.
func sameFile(t *testing.T, p string, want []byte) bool {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Errorf("%v", err)
		return false
	}
	return bytes.Equal(got, want)
}

// closedPort is a loopback address nothing listens on: a server that is down.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// imageAt is e.image with another --server.
func (e *env) imageAt(server string, extra ...string) []string {
	return append([]string{"-d", "debian", "-r", "bookworm", "-a", "amd64",
		"--server", server, "--keyring", e.srv.KeyFile}, extra...)
}

// mustFailClear is mustFail, and the ERROR line says each thing once: a
// message that repeats an operation and path ("write P: write P: ...")
// is not clear.
func (e *env) mustFailClear(r result, want string) {
	e.t.Helper()
	e.mustFail(r, want)
	for _, l := range errorLines(r.stderr) {
		parts := strings.Split(l, ": ")
		for i := 1; i < len(parts); i++ {
			if parts[i] == parts[i-1] {
				e.t.Errorf("the ERROR line repeats %q:\n%s", parts[i], l)
			}
		}
	}
}

func errorLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "ERROR: ") {
			out = append(out, l)
		}
	}
	return out
}

// TestRobustTransferFaults: faults in the middle of the rootfs download.
// A dropped connection is resumed with a Range request and no byte that
// arrived is fetched again; a server that then ignores the range sends the
// whole file, which replaces the partial one (and restarts the unpack that
// runs while the rootfs downloads); a Content-Length longer than the body
// is noticed and the download completed. Every time the container gets the
// image's tree, nothing more and nothing less.
func TestRobustTransferFaults(t *testing.T) {
	t.Parallel()
	files, xz := bigRootfs(t)
	size := int64(len(xz))
	cut := size / 2

	t.Run("dropped", func(t *testing.T) {
		t.Parallel()
		e := newBigEnv(t)
		e.srv.DropAfter(defaultRootfsPath, cut, 1)
		r := e.run(e.image()...)
		if r.code != 0 {
			t.Fatalf("create with a dropped connection:\n%s", r)
		}
		reqs := e.srv.RequestsFor(defaultRootfsPath)
		from := resumedFrom(reqs)
		if len(reqs) != 2 || from <= 0 || from > cut {
			t.Errorf("want the dropped request and one Range request from at most byte %d:\n%s", cut, logOf(reqs))
		}
		// Only what was lost in flight at the drop may come twice.
		if sent := e.srv.BytesSent(defaultRootfsPath); from > 0 && sent != size+cut-from {
			t.Errorf("%d bytes sent for a %d-byte rootfs resumed at %d (dropped at %d):\n%s", sent, size, from, cut, logOf(reqs))
		}
		e.checkImage(files, xz)
	})

	t.Run("dropped, then range ignored", func(t *testing.T) {
		t.Parallel()
		e := newBigEnv(t)
		e.srv.DropAfter(defaultRootfsPath, cut, 1)
		// The first request uses up one (it asks for no range).
		e.srv.IgnoreRange(defaultRootfsPath, 2)
		r := e.run(e.image()...)
		if r.code != 0 {
			t.Fatalf("create with a server ignoring Range:\n%s", r)
		}
		reqs := e.srv.RequestsFor(defaultRootfsPath)
		if len(reqs) != 2 || resumedFrom(reqs) <= 0 || reqs[1].Status != 200 || reqs[1].Bytes != size {
			t.Errorf("want the dropped request, then a Range request answered with the whole file:\n%s", logOf(reqs))
		}
		e.checkImage(files, xz)
	})

	t.Run("content-length too long", func(t *testing.T) {
		t.Parallel()
		e := newBigEnv(t)
		e.srv.LongContentLength(defaultRootfsPath, 1000, 1)
		r := e.run(e.image()...)
		if r.code != 0 {
			t.Fatalf("create with a Content-Length 1000 bytes too long:\n%s", r)
		}
		reqs := e.srv.RequestsFor(defaultRootfsPath)
		if len(reqs) < 2 || resumedFrom(reqs) != size || fileBytes(reqs) != size {
			t.Errorf("want the short response, then a Range request from its end (byte %d), and each byte sent once:\n%s", size, logOf(reqs))
		}
		e.checkImage(files, xz)
	})
}

// checkImage checks that the cache holds the server's rootfs.tar.xz and
// that the container's rootfs is exactly the image's tree.
func (e *env) checkImage(files []fetchtest.File, xz []byte) {
	e.t.Helper()
	if !sameFile(e.t, filepath.Join(e.cacheDir(), "rootfs.tar.xz"), xz) {
		e.t.Error("the cached rootfs.tar.xz differs from the server's")
	}
	checkRootfs(e.t, e.rootfs, files)
	checkNoExtra(e.t, e.rootfs, files)
}

// checkNoExtra fails the test for any path in rootfs that the image does
// not hold (dev/pts aside, which the template adds): the leftovers of an
// unpack that started over.
func checkNoExtra(t *testing.T, rootfs string, files []fetchtest.File) {
	t.Helper()
	want := map[string]bool{".": true, "dev": true, "dev/pts": true}
	for _, f := range files {
		want[strings.TrimSuffix(strings.TrimPrefix(f.Name, "./"), "/")] = true
	}
	var extra []string
	filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(rootfs, p)
		if !want[rel] {
			extra = append(extra, rel)
		}
		return nil
	})
	if len(extra) > 0 {
		t.Errorf("%d paths in the rootfs that the image does not hold: %q", len(extra), extra[:min(len(extra), 10)])
	}
}

// treeSummary describes every path under root, one line each, sorted: type
// and permission bits, owner, size, content digest, link target, device
// and xattrs. The files the image's templates rewrite (they hold the
// container's name) are described without their content.
func treeSummary(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s mode=%o owner=%d:%d", rel, st.Mode, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			line += fmt.Sprintf(" size=%d nlink=%d", st.Size, st.Nlink)
			if rel != "etc/hostname" && rel != "etc/hosts" {
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				h := sha256.New()
				_, err = io.Copy(h, f)
				f.Close()
				if err != nil {
					return err
				}
				line += " sha256=" + hex.EncodeToString(h.Sum(nil))
			}
		case unix.S_IFLNK:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + l
		case unix.S_IFCHR, unix.S_IFBLK:
			line += fmt.Sprintf(" dev=%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
		}
		if sz, _ := unix.Llistxattr(p, nil); sz > 0 {
			buf := make([]byte, sz)
			n, _ := unix.Llistxattr(p, buf)
			names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
			sort.Strings(names)
			for _, name := range names {
				v := make([]byte, 64<<10)
				m, _ := unix.Lgetxattr(p, name, v)
				line += fmt.Sprintf(" %s=%q", name, v[:max(m, 0)])
			}
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatalf("describe %s: %v", root, err)
	}
	sort.Strings(out)
	return out
}

// firstDifference names the first line where two tree summaries differ.
func firstDifference(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("%q\nvs\n%q", a[i], b[i])
		}
	}
	if len(a) != len(b) {
		return fmt.Sprintf("%d paths vs %d", len(a), len(b))
	}
	return ""
}

// findPartial is the size of the rootfs.tar.xz.partial somewhere under the
// cache root (the store stages downloads beside the entry), or -1.
func findPartial(root string) (string, int64) {
	found, size := "", int64(-1)
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "rootfs.tar.xz.partial" {
			if fi, err := d.Info(); err == nil {
				found, size = p, fi.Size()
			}
		}
		return nil
	})
	return found, size
}

// killMidDownload starts a run against a rate-limited server, waits until
// its partial rootfs download holds at least min bytes, and kills it with
// SIGKILL. It returns the size of the partial file seen before the kill.
func (e *env) killMidDownload(total int, args ...string) int64 {
	e.t.Helper()
	// About 4 s for the whole image: time to catch it half-way.
	e.srv.SetRateLimit(int64(total) / 4)
	defer e.srv.SetRateLimit(0)
	p := e.start(nil, args...)
	deadline := time.Now().Add(60 * time.Second)
	var seen int64
	for {
		if p.exited() {
			r, _ := p.wait(0)
			e.t.Fatalf("the run ended before it could be killed:\n%s", r)
		}
		if _, n := findPartial(e.cache); n >= int64(total)/5 {
			seen = n
			break
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no partial rootfs download under %s after 60 s", e.cache)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(unix.SIGKILL); err != nil {
		e.t.Fatal(err)
	}
	r, _ := p.wait(10 * time.Second)
	if st, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !st.Signaled() || st.Signal() != unix.SIGKILL {
		e.t.Fatalf("the run was not killed by SIGKILL (it had finished?):\n%s", r)
	}
	if seen >= int64(total) {
		e.t.Fatalf("the partial file was complete (%d bytes) when the run was killed", seen)
	}
	return seen
}

// TestRobustKill9Resumes: a run killed with SIGKILL in the middle of the
// download leaves a partial file that the next run, without
// --flush-cache, resumes; the result is the image, whole.
func TestRobustKill9Resumes(t *testing.T) {
	t.Parallel()
	files, xz := bigRootfs(t)
	e := newBigEnv(t)
	seen := e.killMidDownload(len(xz), e.image()...)
	killedSent := e.srv.BytesSent(defaultRootfsPath)
	before := len(e.srv.Requests())
	if _, err := os.Stat(filepath.Join(e.cacheDir(), "build_id")); err == nil {
		t.Errorf("a killed download left an entry")
	}

	e.newContainer("c2")
	r := e.run(e.image()...)
	if r.code != 0 {
		t.Fatalf("the run after kill -9:\n%s", r)
	}
	again := requestsSince(e.srv, before, defaultRootfsPath)
	if from := resumedFrom(again); from < seen {
		t.Errorf("the next run did not resume from the %d bytes on disk:\n%s", seen, logOf(again))
	}
	sentAgain := fileBytes(again)
	if sentAgain >= int64(len(xz)) || killedSent+sentAgain >= 2*int64(len(xz)) {
		t.Errorf("%d bytes before the kill and %d after for a %d-byte rootfs:\n%s", killedSent, sentAgain, len(xz), logOf(again))
	}
	e.checkImage(files, xz)
	if _, n := findPartial(e.cache); n >= 0 {
		t.Errorf("a partial download is left in the cache after success (%d bytes)", n)
	}
}

// TestRobustKill9FileChanged: when the file on the server changed between
// the killed run and the next, the partial download is not resumed onto
// it: the If-Range validator makes the server send the new file whole.
func TestRobustKill9FileChanged(t *testing.T) {
	t.Parallel()
	_, xz := bigRootfs(t)
	e := newEnv(t)
	small, _ := e.srv.Get(defaultRootfsPath)
	e.srv.SetSigned(defaultRootfsPath, xz)
	e.killMidDownload(len(xz), e.image()...)
	// Same path, new content (the small image of DefaultImage), signed.
	e.srv.SetSigned(defaultRootfsPath, small)
	before := len(e.srv.Requests())

	e.newContainer("c2")
	r := e.run(e.image()...)
	if r.code != 0 {
		t.Fatalf("the run after kill -9 and a change on the server:\n%s", r)
	}
	again := requestsSince(e.srv, before, defaultRootfsPath)
	if len(again) == 0 || again[0].Range == "" || again[0].IfRange == "" {
		t.Errorf("want the partial download offered for resumption with If-Range:\n%s", logOf(again))
	}
	e.checkImage(fetchtest.DefaultImage().Rootfs, small)
}

// requestsSince are the requests for p in the server's log from index
// before on.
func requestsSince(s *fetchtest.Server, before int, p string) []fetchtest.Request {
	var out []fetchtest.Request
	for _, q := range s.Requests()[before:] {
		if q.Path == p {
			out = append(out, q)
		}
	}
	return out
}

// TestRobustKill9KeepsOldEntry: a run killed while it downloads a new build
// leaves the old entry complete and usable; the next run installs the new
// build, resuming what the killed one fetched.
func TestRobustKill9KeepsOldEntry(t *testing.T) {
	t.Parallel()
	files, xz := bigRootfs(t)
	e := newEnv(t)
	old := fetchtest.DefaultImage()
	if r := e.run(e.image()...); r.code != 0 {
		t.Fatalf("first create:\n%s", r)
	}
	oldRootfs, _ := e.srv.Get(rootfsPath(old))

	// The server publishes a new build, with a big rootfs, and the cached
	// copy has expired so that the next run asks for it.
	next := fetchtest.NewImage("debian", "bookworm", "amd64", "default", "20261201_05:24")
	if err := e.srv.AddImage(next); err != nil {
		t.Fatal(err)
	}
	e.srv.SetSigned(rootfsPath(next), xz)
	e.srv.SetIndex(fetchtest.Index(next))
	expire(t, e.cacheDir())

	e.newContainer("c2")
	e.killMidDownload(len(xz), e.image()...)
	checkOld := func(when string) {
		t.Helper()
		if b, _ := os.ReadFile(filepath.Join(e.cacheDir(), "build_id")); string(b) != old.Build+"\n" {
			t.Errorf("%s: build_id %q, want the old %q", when, b, old.Build)
		}
		if !sameFile(t, filepath.Join(e.cacheDir(), "rootfs.tar.xz"), oldRootfs) {
			t.Errorf("%s: the old rootfs.tar.xz was changed", when)
		}
	}
	checkOld("after kill -9")

	e.newContainer("c3")
	before := len(e.srv.Requests())
	r := e.run(e.image("--force-cache")...)
	if r.code != 0 || !strings.Contains(r.stdout, "Using image from local cache\n") {
		t.Fatalf("--force-cache after kill -9:\n%s", r)
	}
	if n := len(e.srv.Requests()) - before; n != 0 {
		t.Errorf("--force-cache made %d requests", n)
	}
	checkRootfs(t, e.rootfs, old.Rootfs)
	checkOld("after --force-cache")

	e.newContainer("c4")
	before = len(e.srv.Requests())
	r = e.run(e.image()...)
	if r.code != 0 || !strings.Contains(r.stdout, "The image cache is now ready\n") {
		t.Fatalf("the run installing the new build:\n%s", r)
	}
	if b, _ := os.ReadFile(filepath.Join(e.cacheDir(), "build_id")); string(b) != next.Build+"\n" {
		t.Errorf("build_id %q, want the new %q", b, next.Build)
	}
	again := requestsSince(e.srv, before, rootfsPath(next))
	if resumedFrom(again) <= 0 {
		t.Errorf("the new build's download was not resumed:\n%s", logOf(again))
	}
	e.checkImage(files, xz)
}

// expire makes the cached entry older than the cache's cap of 30 days
// (its fetch time is build_id's modification time): a run must ask the
// server again. (The image's own expiry is in its meta tarball, which the
// entry's record covers; TestCacheImageExpiry makes images that expire.)
func expire(t *testing.T, entry string) {
	t.Helper()
	old := time.Now().Add(-31 * 24 * time.Hour)
	if err := os.Chtimes(filepath.Join(entry, "build_id"), old, old); err != nil {
		t.Fatal(err)
	}
}

// TestRobustConcurrent: 8 runs for one image at once, into 8 containers
// sharing one cache, as parallel lxc-create would: one download, all
// succeed, identical trees.
func TestRobustConcurrent(t *testing.T) {
	t.Parallel()
	files, xz := bigRootfs(t)
	e := newBigEnv(t)
	// Slow enough that every run starts while the first downloads.
	e.srv.SetRateLimit(int64(len(xz)))
	const n = 8
	rootfses := make([]string, n)
	procs := make([]*proc, n)
	for i := range n {
		e.newContainer(fmt.Sprintf("c%d", i))
		rootfses[i] = e.rootfs
		procs[i] = e.start(nil, e.image()...)
	}
	downloads := 0
	for i, p := range procs {
		r, ok := p.wait(120 * time.Second)
		if !ok || r.code != 0 {
			t.Errorf("run %d (killed after 120 s: %v):\n%s", i, !ok, r)
		}
		downloads += strings.Count(r.stdout, "Downloading the rootfs\n")
	}
	if t.Failed() {
		t.FailNow()
	}
	reqs := e.srv.RequestsFor(defaultRootfsPath)
	if len(reqs) != 1 || e.srv.BytesSent(defaultRootfsPath) != int64(len(xz)) || downloads != 1 {
		t.Errorf("rootfs.tar.xz downloaded by %d runs, %d requests, %d bytes sent (size %d):\n%s",
			downloads, len(reqs), e.srv.BytesSent(defaultRootfsPath), len(xz), logOf(reqs))
	}
	checkRootfs(t, rootfses[0], files)
	checkNoExtra(t, rootfses[0], files)
	want := treeSummary(t, rootfses[0])
	for i := 1; i < n; i++ {
		if d := firstDifference(want, treeSummary(t, rootfses[i])); d != "" {
			t.Errorf("rootfs of run %d differs from run 0's: %s", i, d)
		}
	}
}

// TestRobustServerDown: with the image server unreachable, a stale cached
// copy is used with a warning; without one, the run fails with one ERROR
// line naming the URL and leaves nothing behind.
func TestRobustServerDown(t *testing.T) {
	t.Parallel()
	// Two ways of being down: nothing listens (connections refused), and a
	// server that accepts connections and drops them.
	refused := func(t *testing.T, e *env) string { return closedPort(t) }
	dropping := func(t *testing.T, e *env) string {
		e.srv.SetHTTPSDown(true)
		e.srv.SetHTTPDown(true)
		return e.srv.Host
	}
	for _, c := range []struct {
		name  string
		stale func(t *testing.T, entry string)
		down  func(t *testing.T, e *env) string
	}{
		{"expired", expire, refused},
		{"older than 30 days", func(t *testing.T, entry string) {
			old := time.Now().Add(-31 * 24 * time.Hour)
			if err := os.Chtimes(filepath.Join(entry, "build_id"), old, old); err != nil {
				t.Fatal(err)
			}
		}, dropping},
	} {
		t.Run("stale cache "+c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			if r := e.run(e.image()...); r.code != 0 {
				t.Fatalf("first create:\n%s", r)
			}
			c.stale(t, e.cacheDir())
			before, _ := os.ReadFile(filepath.Join(e.cacheDir(), "rootfs.tar.xz"))
			e.newContainer("c2")
			down := c.down(t, e)
			r := e.runEnv(2*time.Minute, nil, e.imageAt(down)...)
			if r.code != 0 {
				t.Fatalf("create with the server down and a stale cache:\n%s", r)
			}
			if !strings.Contains(r.stderr, "WARNING: ") || !strings.Contains(r.stderr, down) ||
				!strings.Contains(r.stdout, "Using image from local cache\n") {
				t.Errorf("want a warning and the cached copy:\n%s", r)
			}
			if len(errorLines(r.stderr)) != 0 {
				t.Errorf("an ERROR line on success:\n%s", r)
			}
			checkRootfs(t, e.rootfs, fetchtest.DefaultImage().Rootfs)
			if !sameFile(t, filepath.Join(e.cacheDir(), "rootfs.tar.xz"), before) {
				t.Error("the cached rootfs changed")
			}
		})
	}
	t.Run("no cache", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		down := closedPort(t)
		r := e.runEnv(2*time.Minute, nil, e.imageAt(down)...)
		e.mustFailClear(r, "https://"+down+"/")
		if _, err := os.Stat(e.cacheDir()); err == nil {
			t.Error("an entry was made")
		}
		if _, n := findPartial(e.cache); n >= 0 {
			t.Error("a partial download was made")
		}
	})
}

// TestRobustServerError: a 500 on the rootfs is retried; a server error
// that lasts fails after the attempts with one ERROR line naming the URL.
func TestRobustServerError(t *testing.T) {
	t.Parallel()
	t.Run("500 then success", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.srv.FailN(defaultRootfsPath, 500, 1)
		r := e.run(e.image()...)
		if r.code != 0 {
			t.Fatalf("create after one 500:\n%s", r)
		}
		reqs := e.srv.RequestsFor(defaultRootfsPath)
		if len(reqs) != 2 || reqs[0].Status != 500 || reqs[1].Status != 200 {
			t.Errorf("want a 500 then a 200:\n%s", logOf(reqs))
		}
		checkRootfs(t, e.rootfs, fetchtest.DefaultImage().Rootfs)
	})
	t.Run("503 on every attempt", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.srv.Fail(defaultRootfsPath, 503)
		r := e.runEnv(2*time.Minute, nil, e.image()...)
		e.mustFailClear(r, e.srv.URL+defaultRootfsPath)
		if !strings.Contains(r.stderr, "503") {
			t.Errorf("the error does not give the status:\n%s", r)
		}
		if reqs := e.srv.RequestsFor(defaultRootfsPath); len(reqs) != 3 {
			t.Errorf("want 3 attempts:\n%s", logOf(reqs))
		}
		if _, err := os.Stat(e.cacheDir()); err == nil {
			t.Error("an entry was made")
		}
	})
}

// idleTimeoutEnv is how the tests shorten the binary's idle timeout (30 s
// by default, issue 4).
const idleTimeoutEnv = "LXC_DOWNLOAD_IDLE_TIMEOUT"

// TestRobustIdleTimeout: a server that stops sending in the middle of the
// rootfs is abandoned after the idle timeout and the download resumed; one
// that never sends a byte fails after the attempts, naming the URL.
func TestRobustIdleTimeout(t *testing.T) {
	t.Parallel()
	// With the timeout at 1 s, each run takes a few seconds; with the
	// default 30 s (the variable ignored), over 30.
	const limit = 20 * time.Second
	extra := []string{idleTimeoutEnv + "=1s"}
	t.Run("stall then resume", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		// 512 bytes, then a minute of silence.
		e.srv.Trickle(defaultRootfsPath, 512, time.Minute, 1)
		r, ok := e.start(extra, e.image()...).wait(limit)
		if !ok {
			t.Fatalf("no idle timeout within %v: the binary must take its idle timeout from %s=1s for this test:\n%s", limit, idleTimeoutEnv, r)
		}
		if r.code != 0 {
			t.Fatalf("create with a stalling server:\n%s", r)
		}
		reqs := e.srv.RequestsFor(defaultRootfsPath)
		if len(reqs) != 2 || reqs[1].Range != "bytes=512-" {
			t.Errorf("want the stalled request, then one resuming at byte 512:\n%s", logOf(reqs))
		}
		checkRootfs(t, e.rootfs, fetchtest.DefaultImage().Rootfs)
	})
	t.Run("silent on every attempt", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		// The header, then nothing, on every request.
		e.srv.Stall(defaultRootfsPath, 0, time.Minute, 0)
		r, ok := e.start(extra, e.image()...).wait(limit)
		if !ok {
			t.Fatalf("no idle timeout within %v: the binary must take its idle timeout from %s=1s for this test:\n%s", limit, idleTimeoutEnv, r)
		}
		e.mustFailClear(r, e.srv.URL+defaultRootfsPath)
		if reqs := e.srv.RequestsFor(defaultRootfsPath); len(reqs) != 3 {
			t.Errorf("want 3 attempts:\n%s", logOf(reqs))
		}
		if _, err := os.Stat(e.cacheDir()); err == nil {
			t.Error("an entry was made")
		}
	})
}

// mountTmpfs mounts a tmpfs of the given size (as mount's size= takes it)
// on dir, made if needed, until the test ends; it skips the test when it
// cannot.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a small tmpfs to fill")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0755"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	// Registered after the env's temporary directory, so it runs before
	// that is removed.
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// filesUnder lists the non-directories under root with their sizes,
// skipping those keep says are expected.
func filesUnder(t *testing.T, root string, keep func(rel string) bool) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() || keep(rel) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s (%d bytes)", rel, fi.Size()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// isLockFile: the store's lock files, and the record of the newest build
// seen, stay beside the entries (documented in package cache).
func isLockFile(rel string) bool {
	return strings.HasSuffix(rel, ".lock") || strings.HasSuffix(rel, ".seen")
}

// TestRobustDiskFull: ENOSPC in the cache or in the rootfs gives one clear
// ERROR line and exit 1, leaves the container's rootfs empty, no partial
// download behind, and the old cache entry intact.
func TestRobustDiskFull(t *testing.T) {
	t.Parallel()
	_, xz := bigRootfs(t)
	const noSpace = "no space left on device"
	// A download that would leave less than the reserve free stops first.
	const reserve = "--keep-free"

	t.Run("cache", func(t *testing.T) {
		t.Parallel()
		e := newBigEnv(t)
		e.cache = filepath.Join(e.dir, "small")
		mountTmpfs(t, e.cache, "1m")
		r := e.runEnv(2*time.Minute, nil, e.image()...)
		e.mustFailClear(r, reserve)
		if junk := filesUnder(t, e.cache, isLockFile); len(junk) != 0 {
			t.Errorf("left in the full cache: %s", strings.Join(junk, ", "))
		}
	})

	t.Run("cache with an old entry", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.cache = filepath.Join(e.dir, "small")
		// Room for the small old image, not for the big new one.
		mountTmpfs(t, e.cache, "1m")
		old := fetchtest.DefaultImage()
		if r := e.run(e.image()...); r.code != 0 {
			t.Fatalf("first create:\n%s", r)
		}
		oldRootfs, _ := e.srv.Get(rootfsPath(old))
		next := fetchtest.NewImage("debian", "bookworm", "amd64", "default", "20261201_05:24")
		if err := e.srv.AddImage(next); err != nil {
			t.Fatal(err)
		}
		e.srv.SetSigned(rootfsPath(next), xz)
		e.srv.SetIndex(fetchtest.Index(next))
		expire(t, e.cacheDir())
		before := treeSummary(t, e.cacheDir())

		e.newContainer("c2")
		r := e.runEnv(2*time.Minute, nil, e.image()...)
		e.mustFailClear(r, reserve)
		if d := firstDifference(before, treeSummary(t, e.cacheDir())); d != "" {
			t.Errorf("the old entry changed: %s", d)
		}
		if b, _ := os.ReadFile(filepath.Join(e.cacheDir(), "build_id")); string(b) != old.Build+"\n" {
			t.Errorf("build_id %q, want the old %q", b, old.Build)
		}
		inEntry := func(rel string) bool {
			return isLockFile(rel) || strings.HasPrefix(rel, filepath.Join("download", "debian", "bookworm", "amd64", "default")+"/")
		}
		if junk := filesUnder(t, e.cache, inEntry); len(junk) != 0 {
			t.Errorf("left in the full cache: %s", strings.Join(junk, ", "))
		}
		e.newContainer("c3")
		r = e.run(e.image("--force-cache")...)
		if r.code != 0 {
			t.Fatalf("--force-cache after the disk filled:\n%s", r)
		}
		checkRootfs(t, e.rootfs, old.Rootfs)
		if !sameFile(t, filepath.Join(e.cacheDir(), "rootfs.tar.xz"), oldRootfs) {
			t.Error("the old rootfs.tar.xz changed")
		}
	})

	t.Run("rootfs", func(t *testing.T) {
		t.Parallel()
		e := newBigEnv(t)
		mountTmpfs(t, e.rootfs, "1m")
		r := e.runEnv(2*time.Minute, nil, e.image()...)
		e.mustFailClear(r, noSpace)
		// The download itself was fine and stays cached.
		if !sameFile(t, filepath.Join(e.cacheDir(), "rootfs.tar.xz"), xz) {
			t.Error("the downloaded image was not cached")
		}
	})
}

// checkPrintable fails the test for any control character in out but the
// newline: output that is not a terminal goes to logs (lxc-create's).
func checkPrintable(t *testing.T, what, out string) {
	t.Helper()
	for i, c := range out {
		if c == utf8.RuneError || (c != '\n' && (c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0))) {
			t.Errorf("%s: control character %q at byte %d: %q", what, c, i, out[max(i-40, 0):min(i+40, len(out))])
			return
		}
	}
}

// TestRobustProgress: progress is plain lines when stdout is not a
// terminal, nothing with --quiet, and bars on a terminal.
func TestRobustProgress(t *testing.T) {
	t.Parallel()
	_, xz := bigRootfs(t)
	message := fetchtest.DefaultImage().Meta["create-message"]

	t.Run("log", func(t *testing.T) {
		t.Parallel()
		e := newBigEnv(t)
		r := e.run(e.image()...)
		if r.code != 0 {
			t.Fatalf("%s", r)
		}
		checkPrintable(t, "stdout", r.stdout)
		checkPrintable(t, "stderr", r.stderr)
		// The rootfs (over 1 MiB) says its size, each quarter and the end,
		// between the start of the download and the cache being ready.
		var progress []string
		for _, l := range lines(r.stdout) {
			if strings.HasPrefix(l, "rootfs.tar.xz: ") {
				progress = append(progress, l)
			}
		}
		size := fmt.Sprintf("%.1f MiB", float64(len(xz))/(1<<20))
		want := []string{size + " to download", "25% of " + size, "50% of " + size, "75% of " + size, size + " in "}
		ok := len(progress) == len(want)
		for i := 0; ok && i < len(want); i++ {
			ok = strings.Contains(progress[i], want[i])
		}
		if !ok {
			t.Errorf("rootfs.tar.xz progress lines %q, want lines with %q", progress, want)
		}
		if first, last := strings.Index(r.stdout, "rootfs.tar.xz: "), strings.LastIndex(r.stdout, "rootfs.tar.xz: "); first < strings.Index(r.stdout, "Downloading the rootfs\n") ||
			last > strings.Index(r.stdout, "The image cache is now ready\n") {
			t.Errorf("progress lines out of place:\n%s", r.stdout)
		}
	})

	t.Run("quiet", func(t *testing.T) {
		t.Parallel()
		e := newBigEnv(t)
		r := e.run(e.image("--quiet")...)
		if r.code != 0 {
			t.Fatalf("%s", r)
		}
		if want := "\n---\n" + message; r.stdout != want {
			t.Errorf("--quiet stdout:\n%q\nwant only the create message:\n%q", r.stdout, want)
		}
		if os.Geteuid() == 0 && r.stderr != "" {
			t.Errorf("--quiet stderr as root: %q", r.stderr)
		}
	})

	t.Run("terminal", func(t *testing.T) {
		t.Parallel()
		// golang.org/x/term cannot make a pseudo-terminal; util-linux's
		// script can.
		if !have("script") {
			t.Skip("needs script (util-linux) to run the binary on a pseudo-terminal")
		}
		e := newBigEnv(t)
		out := e.runOnTerminal(t, message)
		// A bar redraws its line: a carriage return not ending a line (the
		// terminal turns each newline into CR LF).
		bar := regexp.MustCompile(`\r[^\r\n]*rootfs\.tar\.xz[^\r\n]*%`)
		if !bar.MatchString(out) {
			t.Errorf("no progress bar for rootfs.tar.xz on a terminal:\n%q", out)
		}
		// From the warm cache, unpacking is all the run does.
		e.newContainer("c2")
		out = e.runOnTerminal(t, message)
		if !strings.Contains(out, "Using image from local cache") {
			t.Fatalf("the second run did not use the cache:\n%q", out)
		}
		unpack := out[strings.Index(out, "Unpacking the rootfs"):]
		unpack = unpack[:strings.Index(unpack, "---")]
		if !regexp.MustCompile(`\r[^\n]`).MatchString(unpack) {
			t.Errorf("no progress bar for the unpack from the cache on a terminal (issue 4 asks for one):\n%q", unpack)
		}
	})
}

// runOnTerminal runs the binary for the current container on a
// pseudo-terminal and returns what it wrote there, which must include
// message (the end of a successful run).
func (e *env) runOnTerminal(t *testing.T, message string) string {
	t.Helper()
	quoted := []string{binary, "--path=" + e.path, "--name=" + e.name, "--rootfs=" + e.rootfs}
	quoted = append(quoted, e.image()...)
	for i, a := range quoted {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	c := exec.Command("script", "-qec", strings.Join(quoted, " "), "/dev/null")
	c.Env = e.environ()
	c.Stdin = strings.NewReader("")
	b, err := c.CombinedOutput()
	out := string(b)
	if err != nil {
		t.Fatalf("on a terminal: %v\n%q", err, out)
	}
	if !strings.Contains(out, "Unpacking the rootfs") || !strings.Contains(out, strings.ReplaceAll(message, "\n", "\r\n")) {
		t.Fatalf("the run on a terminal did not finish:\n%q", out)
	}
	return out
}

// TestRobustNoTmp: the binary writes nothing to the temporary directory:
// TMPDIR unwritable or missing changes nothing, and, as root, a run in a
// mount namespace where /tmp is read-only still works.
func TestRobustNoTmp(t *testing.T) {
	t.Parallel()
	t.Run("TMPDIR", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		tmp := filepath.Join(e.dir, "tmp")
		if err := os.Mkdir(tmp, 0o555); err != nil {
			t.Fatal(err)
		}
		r := e.runEnv(2*time.Minute, []string{"TMPDIR=" + tmp}, e.image()...)
		if r.code != 0 {
			t.Fatalf("with TMPDIR read-only:\n%s", r)
		}
		// Root may write to a 0555 directory: what matters is that
		// nothing did.
		if names, _ := os.ReadDir(tmp); len(names) != 0 {
			t.Errorf("written to TMPDIR: %v", names)
		}
		missing := filepath.Join(e.dir, "no-such-tmp")
		e.newContainer("c2")
		r = e.runEnv(2*time.Minute, []string{"TMPDIR=" + missing}, e.image("--flush-cache")...)
		if r.code != 0 {
			t.Fatalf("with TMPDIR missing:\n%s", r)
		}
		if _, err := os.Stat(missing); err == nil {
			t.Errorf("TMPDIR %s was created", missing)
		}
	})
	t.Run("read-only /tmp", func(t *testing.T) {
		t.Parallel()
		needRoot(t, "makes /tmp read-only in a mount namespace")
		if !have("unshare") {
			t.Skip("needs unshare (util-linux)")
		}
		e := newEnv(t)
		// /tmp read-only; the test's own directory, which may be below
		// it, bound writable on top; then a probe that /tmp refuses.
		script := `set -e
mount --bind /tmp /tmp
mount -o remount,bind,ro /tmp
mount --bind "$ROBUST_DIR" "$ROBUST_DIR"
mount -o remount,bind,rw "$ROBUST_DIR" "$ROBUST_DIR"
if touch /tmp/.lxc-download-robust-probe 2>/dev/null; then rm -f /tmp/.lxc-download-robust-probe; echo "/tmp is still writable" >&2; exit 99; fi
exec "$@"`
		args := append([]string{"-m", "sh", "-c", script, "sh", binary, "--path=" + e.path, "--name=" + e.name, "--rootfs=" + e.rootfs}, e.image()...)
		c := exec.Command("unshare", args...)
		c.Env = append(e.environ(), "ROBUST_DIR="+e.dir)
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		err := c.Run()
		r := result{code: c.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
		if r.code == 99 || (err != nil && strings.Contains(r.stderr, "mount")) {
			t.Skipf("cannot make /tmp read-only here:\n%s", r)
		}
		if r.code != 0 {
			t.Fatalf("with /tmp read-only:\n%s", r)
		}
		checkRootfs(t, e.rootfs, fetchtest.DefaultImage().Rootfs)
	})
}
