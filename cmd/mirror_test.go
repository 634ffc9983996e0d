package cmd_test

// End-to-end tests of `lxc-download mirror`: the real binary mirrors the
// fetchtest image server into a directory, which a plain http.FileServer
// serves over HTTPS under a path prefix (refusing dot paths, as the
// README's nginx snippet does), and the binary, LXC's shell template and
// in-process clients read the mirror.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"golang.org/x/sys/unix"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
	"github.com/lxc/lxc-download/fetch/fetchtest"
	"github.com/lxc/lxc-download/fetch/mirror"
)

// mirrorPrefix is the path the test web server publishes the mirror under.
const mirrorPrefix = "/prefix"

// mirrorEnv is an env (source server, containers, cache) with a mirror
// directory and a web server for it.
type mirrorEnv struct {
	*env
	dest string
	web  *httptest.Server
	// webHost is the mirror as --server takes it: 127.0.0.1:PORT/prefix.
	webHost string
	// caFile trusts both the source server and the web server.
	caFile string
	// hook, when set, runs before the web server answers a request (its
	// path below the prefix).
	hook atomic.Pointer[func(p string)]
}

func newMirrorEnv(t *testing.T, images ...fetchtest.Image) *mirrorEnv {
	t.Helper()
	e := newEnv(t, images...)
	if err := e.srv.EnableStreams(fetchtest.StreamsOptions{NoIncusItems: true}); err != nil {
		t.Fatal(err)
	}
	m := &mirrorEnv{env: e, dest: filepath.Join(e.dir, "mirror")}
	files := http.FileServer(http.Dir(m.dest))
	m.web = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := strings.CutPrefix(r.URL.Path, mirrorPrefix+"/")
		if !ok {
			http.NotFound(w, r)
			return
		}
		for _, seg := range strings.Split(p, "/") {
			if strings.HasPrefix(seg, ".") {
				http.Error(w, "dot paths are not served", http.StatusForbidden)
				return
			}
		}
		if h := m.hook.Load(); h != nil {
			(*h)("/" + p)
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + p
		files.ServeHTTP(w, r2)
	}))
	m.web.StartTLS()
	t.Cleanup(m.web.Close)
	m.webHost = m.web.Listener.Addr().String() + mirrorPrefix
	ca, err := os.ReadFile(e.srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	ca = append(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.web.Certificate().Raw})...)
	m.caFile = filepath.Join(e.dir, "ca.pem")
	if err := os.WriteFile(m.caFile, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	return m
}

// environment is what every run of the binary gets here: both servers
// trusted.
func (m *mirrorEnv) environment() []string { return []string{"SSL_CERT_FILE=" + m.caFile} }

// mirror runs `lxc-download mirror` from the source into dest, args
// before dest.
func (m *mirrorEnv) mirror(args ...string) result {
	m.t.Helper()
	return m.runWithEnv(m.environment(), binary, m.mirrorArgs(args...)...)
}

func (m *mirrorEnv) mirrorArgs(args ...string) []string {
	full := append([]string{"mirror", "--server", m.srv.Host, "--keyring", m.srv.KeyFile}, args...)
	return append(full, m.dest)
}

// mirrorJSON runs the mirror with --format json and decodes its report.
func (m *mirrorEnv) mirrorJSON(args ...string) (result, mirror.Report) {
	m.t.Helper()
	r := m.mirror(append([]string{"--format", "json"}, args...)...)
	var rep mirror.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		m.t.Fatalf("the JSON report does not parse: %v\n%s", err, r)
	}
	return r, rep
}

// fromMirror creates a container named name from the mirror with a cache
// of its own, and returns the env that made it.
func (m *mirrorEnv) fromMirror(name string, extra ...string) (*env, result) {
	m.t.Helper()
	c := &env{t: m.t, srv: m.srv, dir: m.t.TempDir()}
	c.cache = filepath.Join(c.dir, "cache")
	c.newContainer(name)
	args := append([]string{"-d", "debian", "-r", "bookworm", "-a", "amd64", "--server", m.webHost}, extra...)
	if !containsArg(extra, "--keyring") {
		args = append(args, "--keyring", m.srv.KeyFile)
	}
	r := c.runWithEnv(m.environment(), binary, append([]string{"--path=" + c.path, "--name=" + c.name, "--rootfs=" + c.rootfs}, args...)...)
	return c, r
}

func containsArg(args []string, a string) bool {
	for _, x := range args {
		if x == a {
			return true
		}
	}
	return false
}

// sourceRequests are the paths the source server was asked for since the
// log held n requests.
func sourceRequests(s *fetchtest.Server, n int) []string {
	var out []string
	for _, r := range s.Requests()[n:] {
		out = append(out, r.Path)
	}
	return out
}

// snapshot describes every path under root (the work directory
// included): type, mode, size, mtime and content digest. Two equal
// snapshots mean a tree unchanged byte for byte.
func snapshot(t *testing.T, root string) string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		line := fmt.Sprintf("%s %v %d", rel, fi.Mode(), fi.Size())
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			line += fmt.Sprintf(" %s %d", hex.EncodeToString(sum[:8]), fi.ModTime().UnixNano())
		}
		out = append(out, line)
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Join(out, "\n")
}

// published lists the files of the served tree (the work directory left
// out), relative to root.
func published(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && d.Name() == mirror.WorkDir {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// sameAsSource checks that the mirror holds the source's file p byte for
// byte.
func (m *mirrorEnv) sameAsSource(p string) {
	m.t.Helper()
	want, ok := m.srv.Get(p)
	if !ok {
		m.t.Fatalf("the source has no %s", p)
	}
	got, err := os.ReadFile(filepath.Join(m.dest, p))
	if err != nil {
		m.t.Errorf("the mirror lacks %s: %v", p, err)
		return
	}
	if !bytes.Equal(got, want) {
		m.t.Errorf("the mirror's %s differs from the source's", p)
	}
}

// TestMirrorCreate (issue test 1): a container made from the mirror, with
// --server HOST:PORT/prefix, is the one made from the source; the mirror
// holds the source's files byte for byte, its work directory is private,
// and the container's run asks the source nothing.
func TestMirrorCreate(t *testing.T) {
	t.Parallel()
	m := newMirrorEnv(t)
	r := m.mirror()
	if r.code != 0 {
		t.Fatalf("mirror:\n%s", r)
	}
	if !strings.Contains(r.stdout, "Summary: 1 image, 1 build: 1 fetched") {
		t.Errorf("no summary line:\n%s", r)
	}
	img := fetchtest.DefaultImage()
	dir := fetchtest.ImageDir(img)
	for _, p := range append(fetchtest.IndexPaths(), fetchtest.StreamsIndexPath, fetchtest.StreamsImagesPath) {
		m.sameAsSource(p)
		if strings.HasPrefix(p, "/meta/") {
			m.sameAsSource(p + ".asc")
		} else {
			m.sameAsSource(p + fetchtest.StreamsSignatureSuffix)
		}
	}
	for _, f := range []string{"rootfs.tar.xz", "meta.tar.xz", "SHA256SUMS", "SHA256SUMS.asc", "rootfs.tar.xz.asc", "meta.tar.xz.asc"} {
		m.sameAsSource(dir + f)
	}
	if fi, err := os.Stat(filepath.Join(m.dest, mirror.WorkDir)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("work directory: %v, %v", fi, err)
	}
	for _, d := range []string{"", "images", "meta/1.0", "images/debian/bookworm/amd64/default/" + img.Build} {
		if fi, err := os.Stat(filepath.Join(m.dest, d)); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v, %v (want mode 0755)", d, fi, err)
		}
	}

	if r := m.run(m.image()...); r.code != 0 {
		t.Fatalf("from the source:\n%s", r)
	}
	before := len(m.srv.Requests())
	c, r := m.fromMirror("c1")
	if r.code != 0 {
		t.Fatalf("from the mirror:\n%s", r)
	}
	if got := sourceRequests(m.srv, before); len(got) > 0 {
		t.Errorf("the run from the mirror asked the source for %q", got)
	}
	if a, b := treeSummary(t, m.rootfs), treeSummary(t, c.rootfs); firstDifference(a, b) != "" {
		t.Errorf("the rootfs from the mirror differs: %s", firstDifference(a, b))
	}
	for _, f := range []string{"config", "fstab"} {
		a := strings.ReplaceAll(m.read(f), m.path, "LXCPATH")
		b := strings.ReplaceAll(c.read(f), c.path, "LXCPATH")
		if a != b {
			t.Errorf("%s from the mirror differs:\n%s\nvs\n%s", f, a, b)
		}
	}
}

// TestMirrorShellTemplate (issue test 2): LXC's own shell template,
// given the mirror as --server HOST:PORT/prefix (its DOWNLOAD_SERVER),
// makes the container this program makes from the source.
func TestMirrorShellTemplate(t *testing.T) {
	const shell = "/usr/share/lxc/templates/lxc-download"
	needRoot(t, "the shell template unpacks owners and devices")
	need(t, "LXC's shell template "+shell, isShellTemplate(shell))
	need(t, "wget, tar and xz for the shell template", have("wget") && have("tar") && have("xz"))
	t.Parallel()
	m := newMirrorEnv(t)
	if r := m.mirror(); r.code != 0 {
		t.Fatalf("mirror:\n%s", r)
	}
	if r := m.run(m.image()...); r.code != 0 {
		t.Fatalf("from the source:\n%s", r)
	}
	theirs := &env{t: t, srv: m.srv, dir: t.TempDir()}
	theirs.cache = filepath.Join(theirs.dir, "cache")
	theirs.newContainer("c1")
	wgetrc := filepath.Join(theirs.dir, "wgetrc")
	os.WriteFile(wgetrc, []byte("ca_certificate = "+m.caFile+"\n"), 0o644)
	before := len(m.srv.Requests())
	cmd := exec.Command("sh", shell, "--path="+theirs.path, "--name=c1", "--rootfs="+theirs.rootfs,
		"-d", "debian", "-r", "bookworm", "-a", "amd64", "--server", m.webHost)
	cmd.Env = append(theirs.environ(), "WGETRC="+wgetrc)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("shell template from the mirror: %v\n%s", err, out)
	}
	if got := sourceRequests(m.srv, before); len(got) > 0 {
		t.Errorf("the shell template asked the source for %q", got)
	}
	tmpl, _ := os.ReadFile(shell)
	xattrs := bytes.Contains(tmpl, []byte("--xattrs-include"))
	if a, b := describeTree(t, m.rootfs, xattrs), describeTree(t, theirs.rootfs, xattrs); a != b {
		t.Errorf("the shell template's rootfs from the mirror differs:\n--- ours from the source\n%s\n--- shell template from the mirror\n%s", a, b)
	}
	for _, f := range []string{"config", "fstab"} {
		a := strings.ReplaceAll(m.read(f), m.path, "LXCPATH")
		b := strings.ReplaceAll(theirs.read(f), theirs.path, "LXCPATH")
		if a != b {
			t.Errorf("%s differs:\n--- ours from the source\n%s\n--- shell template from the mirror\n%s", f, a, b)
		}
	}
}

// TestMirrorRerun (issue test 5): a second run with nothing new at the
// source asks only for the indexes and streams, downloads no build, and
// leaves the mirror as it was, byte for byte.
func TestMirrorRerun(t *testing.T) {
	t.Parallel()
	m := newMirrorEnv(t)
	if r := m.mirror(); r.code != 0 {
		t.Fatalf("mirror:\n%s", r)
	}
	before := snapshot(t, m.dest)
	n := len(m.srv.Requests())
	r, rep := m.mirrorJSON()
	if r.code != 0 || !rep.OK {
		t.Fatalf("rerun:\n%s", r)
	}
	for _, p := range sourceRequests(m.srv, n) {
		if !strings.HasPrefix(p, "/meta/1.0/") && !strings.HasPrefix(p, "/streams/v1/") {
			t.Errorf("the rerun asked the source for %s", p)
		}
	}
	if rep.Fetched != 0 || rep.UpToDate != 1 || rep.Bytes != 0 || len(rep.Published) != 0 {
		t.Errorf("rerun report: %+v", rep)
	}
	// The state file is written again (same content); everything else is
	// untouched.
	after := snapshot(t, m.dest)
	if strip(before) != strip(after) {
		t.Errorf("the rerun changed the mirror:\n%s\n---\n%s", before, after)
	}
}

// strip leaves the mirror's own record out of a snapshot.
func strip(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, mirror.WorkDir+"/state.json ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// startMirror starts `lxc-download mirror` in the background.
func (m *mirrorEnv) startMirror(args ...string) *proc {
	m.t.Helper()
	p := &proc{cmd: exec.Command(binary, m.mirrorArgs(args...)...), done: make(chan struct{})}
	p.cmd.Env = append(m.environ(), m.environment()...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.err
	if err := p.cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		p.res = result{code: p.cmd.ProcessState.ExitCode(), stdout: p.out.String(), stderr: p.err.String()}
		if err != nil && p.res.code == 0 {
			p.res.code = -1
		}
		close(p.done)
	}()
	m.t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// newBuild is the default image's next build, published by the source in
// its streams and its index, with the given rootfs tarball if not nil.
func (m *mirrorEnv) newBuild(id string, rootfs []byte) fetchtest.Image {
	m.t.Helper()
	b := fetchtest.DefaultImage()
	b.Build = id
	if err := m.srv.AddRetainedBuild(b); err != nil {
		m.t.Fatal(err)
	}
	if rootfs != nil {
		m.srv.SetSigned(rootfsPath(b), rootfs)
		if err := m.srv.RefreshStreams(); err != nil {
			m.t.Fatal(err)
		}
	}
	m.srv.SetIndex(fetchtest.Index(b))
	return b
}

// keyring reads the source's public key.
func (m *mirrorEnv) keyring() openpgp.EntityList {
	m.t.Helper()
	kr, err := fetch.ReadKeyring(m.srv.KeyFile)
	if err != nil {
		m.t.Fatal(err)
	}
	return kr
}

// client is an in-process client of the mirror.
func (m *mirrorEnv) client(kr openpgp.EntityList) *fetch.Client {
	m.t.Helper()
	pool, err := fetchtest.CertPool()
	if err != nil {
		m.t.Fatal(err)
	}
	pool.AddCert(m.web.Certificate())
	c, err := fetch.New(fetch.Options{Server: m.webHost, Validate: true, Keyring: kr, RootCAs: pool,
		RetryWait: 300 * time.Millisecond, DiskReserve: -1})
	if err != nil {
		m.t.Fatal(err)
	}
	return c
}

// buildComplete checks on disk that every build the index data names
// is in the mirror whole: its SHA256SUMS verifies and both tarballs match
// it. It returns what is wrong, "" if nothing.
func buildComplete(dest string, kr openpgp.EntityList, index []byte) string {
	ix, err := compat.ParseIndex(index)
	if err != nil {
		return err.Error()
	}
	for _, e := range ix.Entries {
		dir := filepath.Join(dest, e.Path)
		sums, err1 := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
		sig, err2 := os.ReadFile(filepath.Join(dir, "SHA256SUMS.asc"))
		if err1 != nil || err2 != nil {
			return fmt.Sprintf("%s: %v %v", e.Path, err1, err2)
		}
		if err := fetch.VerifyDetached(kr, "SHA256SUMS", sums, sig); err != nil {
			return fmt.Sprintf("%s: %v", e.Path, err)
		}
		parsed, err := fetch.ParseSHA256SUMS(sums)
		if err != nil {
			return err.Error()
		}
		for _, f := range []string{"meta.tar.xz", "rootfs.tar.xz"} {
			data, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				return err.Error()
			}
			sum := sha256.Sum256(data)
			if want, _ := fetch.LookupSHA256(parsed, f); want != hex.EncodeToString(sum[:]) {
				return fmt.Sprintf("%s%s does not match SHA256SUMS", e.Path, f)
			}
		}
	}
	return ""
}

// TestMirrorPolling (issue test 3): while a run publishes a new build,
// clients polling the mirror's index never get an index that names a
// build that is missing or incomplete, nor one whose signature does not
// match. One client's requests are made to straddle the switch of the
// index and its signature (its signature request is held until both
// files are replaced, after its index request got the old index): at that
// moment the new build must already be whole on disk, and the client must
// come out with the new index, verified, having read the pair again.
func TestMirrorPolling(t *testing.T) {
	t.Parallel()
	_, xz := bigRootfs(t)
	m := newMirrorEnv(t)
	if r := m.mirror(); r.code != 0 {
		t.Fatalf("first mirror run:\n%s", r)
	}
	b := m.newBuild("20261121_05:24", xz)
	// About two seconds for the new rootfs: polls run meanwhile.
	m.srv.SetRateLimit(int64(len(xz)) / 2)
	kr := m.keyring()

	const indexRel = "/meta/1.0/index-system.7"
	var armed atomic.Bool
	armed.Store(true)
	holding := make(chan struct{})
	atSwitch := make(chan string, 1)
	hook := func(p string) {
		if p != indexRel+".asc" || !armed.CompareAndSwap(true, false) {
			return
		}
		close(holding)
		read := func(p string) []byte { data, _ := os.ReadFile(filepath.Join(m.dest, p)); return data }
		oldIndex, oldSig := read(indexRel), read(indexRel+".asc")
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			index, sig := read(indexRel), read(indexRel+".asc")
			if !bytes.Equal(index, oldIndex) && !bytes.Equal(sig, oldSig) {
				atSwitch <- buildComplete(m.dest, kr, index)
				return
			}
		}
		atSwitch <- "the index and its signature were not both replaced within 60 s"
	}
	m.hook.Store(&hook)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var heldRes *fetch.IndexResult
	var heldErr error
	heldDone := make(chan struct{})
	go func() {
		defer close(heldDone)
		heldRes, heldErr = m.client(kr).FetchIndex(ctx, compat.System)
	}()
	<-holding

	var mu sync.Mutex
	var problems []string
	var polls atomic.Int64
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		c := m.client(kr)
		for ctx.Err() == nil {
			res, err := c.FetchIndex(ctx, compat.System)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				for _, e := range res.Index.Entries {
					dir, derr := os.MkdirTemp(m.dir, "poll")
					if derr != nil {
						err = derr
						break
					}
					_, err = c.FetchImage(ctx, e, dir)
					os.RemoveAll(dir)
					if err != nil {
						err = fmt.Errorf("build %s named by the index: %w", e.Build, err)
						break
					}
				}
			}
			if err != nil && ctx.Err() == nil {
				mu.Lock()
				problems = append(problems, err.Error())
				mu.Unlock()
			}
			polls.Add(1)
		}
	}()

	r := m.mirror()
	if r.code != 0 {
		t.Fatalf("the mirror run that publishes the new build:\n%s", r)
	}
	select {
	case msg := <-atSwitch:
		if msg != "" {
			t.Errorf("when the index switched, the build it names was not whole: %s", msg)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the held signature request never saw the switch")
	}
	<-heldDone
	// A few more polls of the settled mirror.
	for n := polls.Load(); polls.Load() < n+3; {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-pollDone
	if heldErr != nil {
		t.Errorf("the client whose requests straddled the switch: %v", heldErr)
	} else if e := heldRes.Index.Entries; len(e) != 1 || e[0].Build != b.Build {
		t.Errorf("the straddling client got %+v, want the new build", e)
	}
	if polls.Load() < 5 {
		t.Errorf("only %d polls: the test proves little", polls.Load())
	}
	for _, p := range problems {
		t.Errorf("a polling client: %s", p)
	}
	t.Logf("%d polls", polls.Load())
}

// TestMirrorTampered (issue test 4): a build whose files do not verify is
// reported and never published, nor kept; the other builds are, and the
// source's indexes, which name the bad build, wait. A catalogue whose
// sha256 disagrees with the signed SHA256SUMS fails the build too, and an
// index whose signature does not match fails the run before it changes
// anything.
func TestMirrorTampered(t *testing.T) {
	t.Parallel()
	u := fetchtest.NewImage("ubuntu", "noble", "amd64", "default", "20261120_05:24")
	m := newMirrorEnv(t, fetchtest.DefaultImage(), u)
	bad := bytes.Repeat([]byte("not the signed rootfs "), 1000)
	m.srv.Set(rootfsPath(u), bad)

	r, rep := m.mirrorJSON()
	if r.code != 1 || rep.OK || rep.Failed != 1 || rep.Fetched != 1 || rep.HeldBack == "" {
		t.Fatalf("a run with a tampered build: report %+v\n%s", rep, r)
	}
	if errs := errorLines(r.stderr); len(errs) != 1 || !strings.Contains(errs[0], "1 of 2 builds failed") {
		t.Errorf("want one ERROR line saying 1 of 2 builds failed:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "FAILED ubuntu/noble/amd64/default 20261120_05:24: ") || !strings.Contains(r.stderr, "rootfs.tar.xz") {
		t.Errorf("the failed build is not reported:\n%s", r.stderr)
	}
	filepath.WalkDir(m.dest, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if data, _ := os.ReadFile(p); bytes.Contains(data, bad[:100]) {
				t.Errorf("the tampered bytes are in %s", p)
			}
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(m.dest, fetchtest.ImageDir(u))); err == nil {
		t.Errorf("the tampered build was published")
	}
	if got := published(t, m.dest); len(got) != 6 {
		t.Errorf("want only the good build's 6 files published, got %q", got)
	}
	m.sameAsSource(defaultRootfsPath)

	// The streams lie about the good build's rootfs (signed all the same):
	// it fails, against the signed SHA256SUMS.
	m2 := newMirrorEnv(t)
	data, _ := m2.srv.Get(defaultRootfsPath)
	real, other := sha256.Sum256(data), sha256.Sum256([]byte("something else"))
	m2.srv.TamperStreams(fetchtest.StreamsImagesPath, func(b []byte) []byte {
		return bytes.ReplaceAll(b, []byte(hex.EncodeToString(real[:])), []byte(hex.EncodeToString(other[:])))
	}, true)
	r, rep = m2.mirrorJSON()
	if r.code != 1 || rep.Failed != 1 || !strings.Contains(r.stderr, "the streams list rootfs.tar.xz with SHA256") {
		t.Errorf("streams that disagree with SHA256SUMS: %+v\n%s", rep, r)
	}
	if got := published(t, m2.dest); len(got) != 0 {
		t.Errorf("published after the streams disagreed: %q", got)
	}

	// An index whose signature does not match: nothing changes.
	m3 := newMirrorEnv(t)
	if r := m3.mirror(); r.code != 0 {
		t.Fatalf("mirror:\n%s", r)
	}
	before := snapshot(t, m3.dest)
	ix, _ := m3.srv.Get("/meta/1.0/index-system.7")
	m3.srv.Set("/meta/1.0/index-system.7", append(ix, []byte(fetchtest.IndexLine(u))...))
	r = m3.mirror()
	m3.mustFail(r, "Invalid signature for index-system.7")
	if after := snapshot(t, m3.dest); strip(after) != strip(before) {
		t.Errorf("a run refused for its index changed the mirror:\n%s\n---\n%s", before, after)
	}
}

// TestMirrorKill9Resumes (issue test 6): a run killed with SIGKILL in the
// middle of a download publishes nothing; the next run resumes the
// partial file from where it stopped and publishes the build whole.
func TestMirrorKill9Resumes(t *testing.T) {
	t.Parallel()
	_, xz := bigRootfs(t)
	m := newMirrorEnv(t)
	m.srv.SetSigned(defaultRootfsPath, xz)
	if err := m.srv.RefreshStreams(); err != nil {
		t.Fatal(err)
	}
	m.srv.SetRateLimit(int64(len(xz)) / 4)
	p := m.startMirror()
	var seen int64
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if p.exited() {
			r, _ := p.wait(0)
			t.Fatalf("the run ended before it could be killed:\n%s", r)
		}
		if _, n := findPartial(m.dest); n >= int64(len(xz))/5 {
			seen = n
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no partial download after 60 s")
		}
	}
	if err := p.cmd.Process.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r, _ := p.wait(10 * time.Second)
	if st, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !st.Signaled() {
		t.Fatalf("the run was not killed:\n%s", r)
	}
	if got := published(t, m.dest); len(got) != 0 {
		t.Errorf("a killed run published %q", got)
	}
	// What else a killed run may leave beside the partial file (of a file
	// the build no longer has) is not published with the build.
	partial, _ := findPartial(m.dest)
	os.WriteFile(filepath.Join(filepath.Dir(partial), "rootfs.squashfs.partial"), []byte("unverified"), 0o644)
	m.srv.SetRateLimit(0)
	n := len(m.srv.Requests())
	if r := m.mirror(); r.code != 0 {
		t.Fatalf("the run after kill -9:\n%s", r)
	}
	again := requestsSince(m.srv, n, defaultRootfsPath)
	if from := resumedFrom(again); from < seen {
		t.Errorf("the next run did not resume from the %d bytes on disk:\n%s", seen, logOf(again))
	}
	if sent := fileBytes(again); sent >= int64(len(xz)) {
		t.Errorf("the next run downloaded %d bytes of a %d-byte rootfs", sent, len(xz))
	}
	m.sameAsSource(defaultRootfsPath)
	if _, n := findPartial(m.dest); n >= 0 {
		t.Errorf("a partial file is left after success")
	}
	if got := published(t, filepath.Join(m.dest, fetchtest.ImageDir(fetchtest.DefaultImage()))); len(got) != 6 {
		t.Errorf("the build directory holds %q, want its 6 files", got)
	}
}

// TestMirrorPrune (issue test 7): a build no published file names is kept
// through its grace period and removed after it; a build that a
// published index still names is never removed, whatever the grace.
func TestMirrorPrune(t *testing.T) {
	t.Parallel()
	m := newMirrorEnv(t)
	if r := m.mirror(); r.code != 0 {
		t.Fatalf("mirror:\n%s", r)
	}
	a := fetchtest.DefaultImage()
	aDir := filepath.Join(m.dest, fetchtest.ImageDir(a))
	// The source moves on to b, whose rootfs does not verify, and drops a.
	b := m.newBuild("20261121_05:24", []byte("not a rootfs"))
	m.srv.SetSigned(rootfsPath(b), []byte("not a rootfs either"))
	m.srv.Set(rootfsPath(b), []byte("tampered"))
	if err := m.srv.RemoveBuild(a); err != nil {
		t.Fatal(err)
	}
	r, rep := m.mirrorJSON("--prune", "--prune-grace", "0")
	if r.code != 1 || rep.HeldBack == "" || len(rep.Pruned) != 0 {
		t.Errorf("b failed, the index is held back, a must stay: %+v\n%s", rep, r)
	}
	if _, err := os.Stat(aDir); err != nil {
		t.Fatalf("a build the published index names was pruned: %v", err)
	}

	// b is fixed: it is published, and a waits out its grace period.
	if err := m.srv.SetRootfs(b); err != nil {
		t.Fatal(err)
	}
	if err := m.srv.RefreshStreams(); err != nil {
		t.Fatal(err)
	}
	r, rep = m.mirrorJSON("--prune")
	if r.code != 0 || len(rep.Pruned) != 0 || len(rep.InGrace) != 1 || rep.InGrace[0].Path != strings.Trim(fetchtest.ImageDir(a), "/") {
		t.Fatalf("a must be in its grace period: %+v\n%s", rep, r)
	}
	if d := rep.InGrace[0].PruneAfter.Sub(rep.InGrace[0].UnnamedSince); d != mirror.DefaultPruneGrace {
		t.Errorf("grace period %v, want %v", d, mirror.DefaultPruneGrace)
	}
	if _, err := os.Stat(aDir); err != nil {
		t.Fatalf("a was pruned within its grace period: %v", err)
	}
	// The grace period counts from when a was first found unnamed, not
	// from each run.
	r, rep = m.mirrorJSON("--prune", "--prune-grace", "1h")
	if r.code != 0 || len(rep.InGrace) != 1 || rep.InGrace[0].PruneAfter.Sub(rep.InGrace[0].UnnamedSince) != time.Hour {
		t.Errorf("grace 1h: %+v", rep)
	}
	r, rep = m.mirrorJSON("--prune", "--prune-grace", "0")
	if r.code != 0 || len(rep.Pruned) != 1 || len(rep.InGrace) != 0 {
		t.Fatalf("after its grace period a must go: %+v\n%s", rep, r)
	}
	if _, err := os.Stat(aDir); err == nil {
		t.Errorf("a is still there")
	}
	if _, err := os.Stat(filepath.Dir(aDir)); err != nil {
		t.Errorf("the image's directory went with a: %v", err)
	}
	if c, r := m.fromMirror("c1"); r.code != 0 {
		t.Errorf("a container from the pruned mirror:\n%s", r)
	} else if b, _ := os.ReadFile(filepath.Join(c.cacheDir(), "build_id")); strings.TrimSpace(string(b)) != "20261121_05:24" {
		t.Errorf("build %q", b)
	}
}

// builds lists the build directories in the mirror.
func builds(t *testing.T, dest string) []string {
	t.Helper()
	var out []string
	for _, f := range published(t, dest) {
		if strings.HasSuffix(f, "/rootfs.tar.xz") {
			out = append(out, strings.TrimSuffix(f, "/rootfs.tar.xz"))
		}
	}
	return out
}

// TestMirrorKeepAndFilters (issue test 8): --keep 2 mirrors the two newest
// builds the source retains; -d, -r, -a and --variant may be repeated (any
// value matches; x86_64 is amd64) and combine with the listing's filters
// (all must hold); a bad filter is an error before anything is made.
func TestMirrorKeepAndFilters(t *testing.T) {
	t.Parallel()
	old := fetchtest.DefaultImage()
	old.Build = "20261118_05:24"
	older := old
	older.Build = "20261117_05:24"
	noble := fetchtest.NewImage("ubuntu", "noble", "amd64", "default", "20261120_05:24")
	arm := fetchtest.NewImage("debian", "bookworm", "arm64", "default", "20261120_05:24")
	m := newMirrorEnv(t, fetchtest.DefaultImage(), noble, arm)
	for _, img := range []fetchtest.Image{old, older} {
		if err := m.srv.AddRetainedBuild(img); err != nil {
			t.Fatal(err)
		}
	}
	root := m.dest

	m.dest = filepath.Join(root, "keep2")
	r, rep := m.mirrorJSON("--keep", "2", "-d", "debian", "-a", "x86_64")
	want := []string{"images/debian/bookworm/amd64/default/20261118_05:24", "images/debian/bookworm/amd64/default/20261120_05:24"}
	if got := builds(t, m.dest); r.code != 0 || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("--keep 2 -d debian -a x86_64: builds %q, want %q\n%s", got, want, r)
	}
	if rep.Fetched != 2 {
		t.Errorf("report %+v", rep)
	}

	m.dest = filepath.Join(root, "keep1")
	r = m.mirror("-d", "debian", "-d", "ubuntu", "--arch", "amd64")
	want = []string{"images/debian/bookworm/amd64/default/20261120_05:24", "images/ubuntu/noble/amd64/default/20261120_05:24"}
	if got := builds(t, m.dest); r.code != 0 || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("-d debian -d ubuntu -a amd64: builds %q, want %q\n%s", got, want, r)
	}

	m.dest = filepath.Join(root, "alias")
	r = m.mirror("alias=ubuntu/24.04", "--variant", "default")
	want = []string{"images/ubuntu/noble/amd64/default/20261120_05:24"}
	if got := builds(t, m.dest); r.code != 0 || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("alias=ubuntu/24.04: builds %q, want %q\n%s", got, want, r)
	}

	m.dest = filepath.Join(root, "bybuild")
	r = m.mirror("bookworm", "arch=amd64", "build=20261117_05:24")
	// The build the filter picks, and the one the index names: the
	// published index must find its build.
	want = []string{"images/debian/bookworm/amd64/default/20261117_05:24", "images/debian/bookworm/amd64/default/20261120_05:24"}
	if got := builds(t, m.dest); r.code != 0 || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("build=20261117_05:24: builds %q, want %q\n%s", got, want, r)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"release=("}, `filter "release=(": "(" is not a regular expression`},
		{[]string{"colour=red"}, `filter "colour=red": unknown key "colour"`},
		{[]string{"--keep", "0"}, "--keep must be a whole number from 1 to 1000"},
		{[]string{"--jobs", "x"}, "--jobs must be a whole number"},
		{[]string{"--prune-grace", "soon"}, "--prune-grace must be a duration"},
		{[]string{"--sign-key", m.srv.KeyFile}, "no secret key that can sign"},
	} {
		m.dest = filepath.Join(root, "bad")
		r := m.mirror(c.args...)
		m.mustFail(r, c.want)
		if _, err := os.Stat(m.dest); err == nil {
			t.Errorf("%q made the destination", c.args)
		}
	}
	r = m.runWithEnv(m.environment(), binary, "mirror", "--server", m.srv.Host)
	m.mustFail(r, "mirror needs the destination directory as its last argument")
}

// TestMirrorDryRun (issue test 8): --dry-run says what would be fetched,
// published and pruned, asks the source for no build, and leaves the
// mirror unchanged byte for byte; into a directory that does not exist,
// it makes nothing.
func TestMirrorDryRun(t *testing.T) {
	t.Parallel()
	m := newMirrorEnv(t)
	if r := m.mirror(); r.code != 0 {
		t.Fatalf("mirror:\n%s", r)
	}
	b := m.newBuild("20261121_05:24", nil)
	if err := m.srv.RemoveBuild(fetchtest.DefaultImage()); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, m.dest)
	n := len(m.srv.Requests())
	r := m.mirror("--dry-run", "--prune", "--prune-grace", "0")
	if r.code != 0 {
		t.Fatalf("dry run:\n%s", r)
	}
	for _, want := range []string{
		"Would fetch debian/bookworm/amd64/default " + b.Build + " into images/debian/bookworm/amd64/default/" + b.Build,
		"Would publish meta/1.0/index-system.7\n",
		"Would publish meta/1.0/index-system.7.asc\n",
		"Would publish streams/v1/images.json\n",
		"Would prune images/debian/bookworm/amd64/default/20261120_05:24\n",
		"Summary: 1 image, 1 build: 1 to fetch",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the dry run does not say %q:\n%s", want, r)
		}
	}
	for _, p := range sourceRequests(m.srv, n) {
		if strings.HasPrefix(p, "/images/") {
			t.Errorf("the dry run asked the source for %s", p)
		}
	}
	r, dry := m.mirrorJSON("--dry-run", "--prune", "--prune-grace", "0")
	if r.code != 0 || !dry.DryRun {
		t.Fatalf("dry run, JSON:\n%s", r)
	}
	if after := snapshot(t, m.dest); after != before {
		t.Errorf("the dry run changed the mirror:\n%s\n---\n%s", before, after)
	}
	// The same run for real does what the dry run said.
	r, rep := m.mirrorJSON("--prune", "--prune-grace", "0")
	if r.code != 0 || rep.Fetched != 1 || dry.Builds[0].Status != mirror.StatusToFetch || dry.Builds[0].Path != rep.Builds[0].Path ||
		strings.Join(dry.Published, " ") != strings.Join(rep.Published, " ") || strings.Join(dry.Pruned, " ") != strings.Join(rep.Pruned, " ") || len(rep.Pruned) != 1 {
		t.Errorf("the real run: %+v\nthe dry run: %+v\n%s", rep, dry, r)
	}

	m.dest = filepath.Join(m.dir, "new")
	if r := m.mirror("--dry-run"); r.code != 0 || !strings.Contains(r.stdout, "Would fetch debian/bookworm/amd64/default") {
		t.Errorf("dry run into a new directory:\n%s", r)
	}
	if _, err := os.Lstat(m.dest); err == nil {
		t.Errorf("the dry run made %s", m.dest)
	}
}

// writeSecretKey writes key's secret part, armored, as gpg
// --export-secret-keys --armor does.
func writeSecretKey(t *testing.T, key *openpgp.Entity, p string) {
	t.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PrivateKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := key.SerializePrivate(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestMirrorSignKey (issue test 8): with --sign-key the indexes and
// streams list the mirrored builds only and are signed with the
// operator's key; the build directories keep the source's signatures; a
// client trusting both keys creates from the mirror, one trusting only
// the source does not. A build that fails leaves its image on the build
// published before, and the other images move on.
func TestMirrorSignKey(t *testing.T) {
	t.Parallel()
	noble := fetchtest.NewImage("ubuntu", "noble", "amd64", "default", "20261120_05:24")
	m := newMirrorEnv(t, fetchtest.DefaultImage(), noble)
	op, err := fetchtest.NewKey("mirror operator")
	if err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(m.dir, "operator.key")
	writeSecretKey(t, op, secret)
	both := filepath.Join(m.dir, "both.asc")
	src, _ := os.ReadFile(m.srv.KeyFile)
	os.WriteFile(both, append(fetchtest.ArmoredPublicKey(op), src...), 0o644)
	opOnly := openpgp.EntityList{op}
	srcOnly := m.keyring()

	r, rep := m.mirrorJSON("--sign-key", secret, "-d", "debian")
	if r.code != 0 || rep.SignedBy != fetchtest.Fingerprint(op) {
		t.Fatalf("mirror --sign-key: %+v\n%s", rep, r)
	}
	read := func(p string) []byte {
		data, err := os.ReadFile(filepath.Join(m.dest, p))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	for _, p := range fetchtest.IndexPaths() {
		if got, want := string(read(p)), fetchtest.IndexLine(fetchtest.DefaultImage()); got != want {
			t.Errorf("%s is %q, want only %q", p, got, want)
		}
		if err := fetch.VerifyDetached(opOnly, p, read(p), read(p+".asc")); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		if err := fetch.VerifyDetached(srcOnly, p, read(p), read(p+".asc")); err == nil {
			t.Errorf("%s verifies with the source's key", p)
		}
	}
	for _, p := range []string{fetchtest.StreamsIndexPath, fetchtest.StreamsImagesPath} {
		if err := fetch.VerifyDetached(opOnly, p, read(p), read(p+fetchtest.StreamsSignatureSuffix)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	s, err := compat.ParseStreams(read(fetchtest.StreamsImagesPath))
	if err != nil || len(s.Products) != 1 || s.Products[0].Key != "debian:bookworm:amd64:default" {
		t.Errorf("the streams list %+v, %v", s, err)
	}
	m.sameAsSource(fetchtest.ImageDir(fetchtest.DefaultImage()) + "SHA256SUMS.asc")

	if _, r := m.fromMirror("c1", "--keyring", both); r.code != 0 {
		t.Errorf("a client trusting both keys:\n%s", r)
	}
	c, r := m.fromMirror("c2", "--keyring", m.srv.KeyFile)
	c.mustFail(r, "Invalid signature for index-system.7")

	// The source moves both images on; debian's new build does not
	// verify. ubuntu is mirrored now too.
	b := m.newBuild("20261121_05:24", nil)
	m.srv.SetIndex(fetchtest.Index(b, noble))
	m.srv.Set(rootfsPath(b), []byte("tampered"))
	r, rep = m.mirrorJSON("--sign-key", secret, "-d", "debian", "-d", "ubuntu")
	if r.code != 1 || rep.Failed != 1 || rep.HeldBack != "" {
		t.Errorf("a failed build with --sign-key: %+v\n%s", rep, r)
	}
	want := fetchtest.IndexLine(fetchtest.DefaultImage()) + fetchtest.IndexLine(noble)
	if got := string(read("meta/1.0/index-system.7")); got != want {
		t.Errorf("the index after a failed build is %q, want %q", got, want)
	}
	if err := fetch.VerifyDetached(opOnly, "index", read("meta/1.0/index-system.7"), read("meta/1.0/index-system.7.asc")); err != nil {
		t.Error(err)
	}
}

// TestMirrorRecordLost: without its record the mirror verifies the builds
// in place instead of fetching them again, and fetches again (replacing
// it in one rename) a build whose files no longer verify.
func TestMirrorRecordLost(t *testing.T) {
	t.Parallel()
	m := newMirrorEnv(t)
	if r := m.mirror(); r.code != 0 {
		t.Fatalf("mirror:\n%s", r)
	}
	record := filepath.Join(m.dest, mirror.WorkDir, "state.json")
	os.Remove(record)
	n := len(m.srv.Requests())
	r, rep := m.mirrorJSON()
	if r.code != 0 || rep.UpToDate != 1 || !strings.Contains(r.stderr, "verified the copy in place") {
		t.Fatalf("a lost record: %+v\n%s", rep, r)
	}
	for _, p := range sourceRequests(m.srv, n) {
		if strings.HasPrefix(p, "/images/") {
			t.Errorf("asked the source for %s", p)
		}
	}
	os.Remove(record)
	meta := filepath.Join(m.dest, fetchtest.ImageDir(fetchtest.DefaultImage()), "meta.tar.xz")
	os.WriteFile(meta, []byte("damaged"), 0o644)
	r, rep = m.mirrorJSON()
	if r.code != 0 || rep.Fetched != 1 || !strings.Contains(r.stderr, "does not verify") {
		t.Fatalf("a damaged build without a record: %+v\n%s", rep, r)
	}
	m.sameAsSource(fetchtest.ImageDir(fetchtest.DefaultImage()) + "meta.tar.xz")
}

// TestMirrorRollback: a source that offers an index signed before the
// one published is refused, and nothing changes.
func TestMirrorRollback(t *testing.T) {
	t.Parallel()
	m := newMirrorEnv(t)
	if r := m.mirror(); r.code != 0 {
		t.Fatalf("mirror:\n%s", r)
	}
	before := snapshot(t, m.dest)
	m.srv.SetIndexSignedAt(fetchtest.Index(fetchtest.DefaultImage()), time.Now().Add(-time.Hour))
	r := m.mirror()
	m.mustFail(r, "refusing to go back")
	if after := snapshot(t, m.dest); strip(after) != strip(before) {
		t.Errorf("a refused run changed the mirror")
	}
}

// TestMirrorLock: one run at a time per destination.
func TestMirrorLock(t *testing.T) {
	t.Parallel()
	_, xz := bigRootfs(t)
	m := newMirrorEnv(t)
	m.srv.SetSigned(defaultRootfsPath, xz)
	if err := m.srv.RefreshStreams(); err != nil {
		t.Fatal(err)
	}
	m.srv.SetRateLimit(int64(len(xz)) / 2)
	p := m.startMirror()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, n := findPartial(m.dest); n > 0 {
			break
		}
		if time.Now().After(deadline) || p.exited() {
			t.Fatal("the first run did not start downloading")
		}
	}
	r := m.mirror()
	m.mustFail(r, "another mirror run is working on "+m.dest)
	m.srv.SetRateLimit(0)
	if r, ok := p.wait(60 * time.Second); !ok || r.code != 0 {
		t.Errorf("the first run:\n%s", r)
	}
}

// TestMirrorIncus: --incus also mirrors the files Incus takes for a
// container, verified by the signed streams, into a build directory
// already in place without fetching its LXC files again; with --sign-key
// the streams list them only when they are mirrored; unsigned streams
// vouch for nothing, and the build fails.
func TestMirrorIncus(t *testing.T) {
	t.Parallel()
	m := newMirrorEnv(t)
	if err := m.srv.EnableStreams(fetchtest.StreamsOptions{}); err != nil {
		t.Fatal(err)
	}
	img := fetchtest.DefaultImage()
	dir := fetchtest.ImageDir(img)
	if r := m.mirror(); r.code != 0 {
		t.Fatalf("mirror:\n%s", r)
	}
	if _, err := os.Stat(filepath.Join(m.dest, dir, "incus.tar.xz")); err == nil {
		t.Fatal("Incus files without --incus")
	}
	n := len(m.srv.Requests())
	r, rep := m.mirrorJSON("--incus")
	if r.code != 0 || rep.Fetched != 1 {
		t.Fatalf("--incus: %+v\n%s", rep, r)
	}
	for _, f := range []string{"incus.tar.xz", "lxd.tar.xz", "rootfs.squashfs"} {
		m.sameAsSource(dir + f)
	}
	for _, p := range sourceRequests(m.srv, n) {
		if strings.HasSuffix(p, ".tar.xz") && !strings.HasSuffix(p, "incus.tar.xz") && !strings.HasSuffix(p, "lxd.tar.xz") {
			t.Errorf("the LXC files were fetched again: %s", p)
		}
	}
	if r, rep := m.mirrorJSON("--incus"); r.code != 0 || rep.UpToDate != 1 {
		t.Errorf("rerun with --incus: %+v\n%s", rep, r)
	}

	// Signed by the operator: the Incus items are listed with --incus
	// only.
	op, _ := fetchtest.NewKey("operator")
	secret := filepath.Join(m.dir, "op.key")
	writeSecretKey(t, op, secret)
	for _, c := range []struct {
		args  []string
		items int
	}{{nil, 1}, {[]string{"--incus"}, 4}} {
		m.dest = filepath.Join(m.dir, fmt.Sprintf("signed%d", c.items))
		if r := m.mirror(append(c.args, "--sign-key", secret)...); r.code != 0 {
			t.Fatalf("%q:\n%s", c.args, r)
		}
		data, _ := os.ReadFile(filepath.Join(m.dest, fetchtest.StreamsImagesPath))
		files, err := compat.BuildFiles(data)
		if err != nil {
			t.Fatal(err)
		}
		if got := files[fetchtest.ProductKey(img)+" "+img.Build]; len(got) != c.items {
			t.Errorf("%q: the streams list %+v, want %d items", c.args, got, c.items)
		}
	}

	// Unsigned streams and a SHA256SUMS that does not list them: nothing
	// vouches for the Incus files.
	m2 := newMirrorEnv(t)
	if err := m2.srv.EnableStreams(fetchtest.StreamsOptions{Unsigned: true}); err != nil {
		t.Fatal(err)
	}
	r, rep = m2.mirrorJSON("--incus")
	if r.code != 1 || rep.Failed != 1 || !strings.Contains(r.stderr, "nothing signed vouches for incus.tar.xz") {
		t.Errorf("--incus with unsigned streams: %+v\n%s", rep, r)
	}
	if got := published(t, m2.dest); len(got) != 0 {
		t.Errorf("published %q", got)
	}
}
