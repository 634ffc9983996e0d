package cmd_test

// The commands around the template run, and the getopt forms of the
// template run that need an image server: the real binary against
// fetchtest.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc/lxc-download/cmd"
	"github.com/lxc/lxc-download/fetch"
	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// twoImages is an env whose server has debian bookworm and alpine 3.20.
func twoImages(t *testing.T) *env {
	img2 := fetchtest.DefaultImage()
	img2.Dist, img2.Release, img2.Build = "alpine", "3.20", "20261121_13:00"
	return newEnv(t, fetchtest.DefaultImage(), img2)
}

// TestGetoptFormsList runs --list in every form getopt reads, and list, and
// wants the same listing as the plain form.
func TestGetoptFormsList(t *testing.T) {
	e := twoImages(t)
	srv := []string{"--server", e.srv.Host, "--keyring", e.srv.KeyFile}
	want := e.runRaw(append([]string{"--list", "--dist", "alpine"}, srv...)...)
	if want.code != 0 || !strings.Contains(want.stdout, "alpine") || strings.Contains(want.stdout, "bookworm") {
		t.Fatalf("plain form:\n%s", want)
	}
	for _, form := range [][]string{
		{"-l", "-dalpine"},
		{"-ldalpine"},
		{"-ld", "alpine"},
		{"--li", "--dis", "alpine"},
		{"--list", "--dist=alpine", "--"},
		{"-d", "debian", "-l", "-d", "alpine"},
		{"-dist", "alpine", "-list"},
		{"-l", "-d=alpine"},
	} {
		args := append(append([]string(nil), form...), srv...)
		if form[len(form)-1] == "--" {
			args = append(append([]string(nil), srv...), form...)
		}
		if r := e.runRaw(args...); r.code != want.code || r.stdout != want.stdout || r.stderr != want.stderr {
			t.Errorf("%q:\n%s\nwant:\n%s", form, r, want)
		}
	}
	// The list command prints the same rows in the text format, without
	// the progress lines.
	listed := e.runRaw(append([]string{"list", "--format=text", "-dalpine"}, srv...)...)
	if listed.code != 0 || !strings.HasSuffix(want.stdout, listed.stdout) || !strings.HasPrefix(listed.stdout, "\n---\nDIST") {
		t.Errorf("list --format=text -dalpine:\n%s\nwant the end of:\n%s", listed, want)
	}
	for _, form := range [][]string{
		{"-dalpine", "--format", "text"},
		{"--format", "text", "alpine"},
		{"--fo=text", "--", "alpine"},
		{"alpine", "--format", "text"},
	} {
		args := append(append([]string{"list"}, form...), srv...)
		if slices.Contains(form, "--") {
			args = append(append([]string{"list"}, srv...), form...)
		}
		if r := e.runRaw(args...); r.code != 0 || r.stdout != listed.stdout {
			t.Errorf("list %q:\n%s\nwant:\n%s", form, r, listed)
		}
	}
	r := e.runRaw(append([]string{"list", "--format", "json", "--variant", "default"}, srv...)...)
	var entries []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &entries); r.code != 0 || err != nil || len(entries) != 2 {
		t.Errorf("list --format json: %v\n%s", err, r)
	}
	e.mustFail(e.runRaw("list", "--format", "xml"), `unknown list format "xml"`)
}

// TestGetoptFormsCreate creates a container with glued values, prefixes
// and repeated options: the last --mapped-uid and --mapped-gid are the ones
// the config is handed to.
func TestGetoptFormsCreate(t *testing.T) {
	needRoot(t, "the config is handed to the mapped ids")
	e := newEnv(t)
	r := e.run("-dubuntu", "-ddebian", "-rbookworm", "-aamd64", "--ser", e.srv.Host, "--keyr="+e.srv.KeyFile,
		"--mapped-uid", "100000", "--mapped-uid", "200000", "--mapped-g", "300000", "-q", "--")
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(e.path, "config"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 200000 || st.Gid != 300000 {
		t.Errorf("config owned by %d:%d, want the last --mapped-uid and --mapped-gid, 200000:300000", st.Uid, st.Gid)
	}
	if !strings.HasPrefix(r.stdout, "\n---\n") {
		t.Errorf("-q (in a group of options) must leave only the create message:\n%s", r)
	}
}

// TestStrayPositional: a word that names a command is a command only as
// the first argument; anywhere else it is a template run's error.
func TestStrayPositional(t *testing.T) {
	e := newEnv(t)
	for _, word := range []string{"list", "cache", "local", "mirror", "version", "help"} {
		r := e.run(append(e.image(), word)...)
		e.mustFail(r, fmt.Sprintf("unexpected argument %q", word))
		if !strings.Contains(r.stderr, "LXC container image downloader") {
			t.Errorf("%s: the template's usage must follow:\n%s", word, r)
		}
		if len(e.srv.Requests()) != 0 {
			t.Errorf("%s: the server was asked", word)
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	e := newEnv(t)
	e.mustFail(e.runRaw("lsit"), `unknown command "lsit" (commands: list, cache, local, mirror, version, help; a template run takes options only)`)
	e.mustFail(e.runRaw("cache"), "lxc-download cache needs a command: list, verify, prune, flush")
	e.mustFail(e.runRaw("cache", "lsit"), `unknown command "lsit" for lxc-download cache`)
	e.mustFail(e.runRaw("cache", "--all"), "lxc-download cache takes a command first")
	e.mustFail(e.runRaw("help", "lsit"), `unknown command "lsit"`)
	e.mustFail(e.runRaw("help", "version", "extra"), `lxc-download version has no command "extra"`)
	e.mustFail(e.runRaw("version", "extra"), `version takes no arguments, not "extra"`)
	e.mustFail(e.runRaw("version", "--bogus"), "unknown option --bogus")
	e.mustFail(e.runRaw("version", "--format=yaml"), `--format must be text or json, not "yaml"`)
	r := e.runRaw("cache", "lsit")
	if r.stdout != "" || !strings.HasSuffix(r.stderr, "Run 'lxc-download cache --help' for its usage.\n") {
		t.Errorf("a command's usage error says where its usage is, on stderr only:\n%s", r)
	}
}

// TestHelpCommands: help, COMMAND --help and -h print the same, which is
// what the man page is made from.
func TestHelpCommands(t *testing.T) {
	e := newEnv(t)
	for _, path := range [][]string{{}, {"list"}, {"version"}, {"cache"}, {"cache", "list"}, {"cache", "verify"}, {"cache", "prune"}, {"cache", "flush"}, {"help"}} {
		want := cmd.CommandHelp(path...)
		if want == "" {
			t.Fatalf("no help for %q", path)
		}
		forms := [][]string{append([]string{"help"}, path...)}
		if len(path) > 0 {
			forms = append(forms, append(append([]string(nil), path...), "--help"), append(append([]string(nil), path...), "-h"))
		}
		for _, args := range forms {
			if r := e.runRaw(args...); r.code != 0 || r.stdout != want || r.stderr != "" {
				t.Errorf("%q:\n%s\nwant:\n%s", args, r, want)
			}
		}
	}
}

func TestVersion(t *testing.T) {
	e := newEnv(t)
	r := e.runRaw("version")
	if r.code != 0 || !strings.Contains(r.stdout, "built-in key: "+fetch.BuiltinFingerprint+"\n") ||
		!strings.Contains(r.stdout, "compat level: 7\n") || !strings.HasPrefix(r.stdout, "lxc-download "+cmd.Version+"\n") {
		t.Errorf("version:\n%s", r)
	}
	if v := e.runRaw("--version"); v.code != 0 || v.stdout != r.stdout {
		t.Errorf("--version must print what version prints:\n%s", v)
	}
	if v := e.runRaw("--vers", "-d", "debian"); v.code != 0 || v.stdout != r.stdout {
		t.Errorf("--vers -d debian:\n%s", v)
	}
	j := e.runRaw("version", "--format", "json")
	var got struct {
		Version, Commit, Go, Platform, BuiltinKey string
		CompatLevel                               int `json:"compat_level"`
	}
	if err := json.Unmarshal([]byte(j.stdout), &got); err != nil || got.Version != cmd.Version || got.Commit == "" ||
		!strings.HasPrefix(got.Go, "go") || got.CompatLevel != 7 {
		t.Errorf("version --format json: %v %+v\n%s", err, got, j)
	}
}

// cacheEnv is an env whose cache holds debian bookworm and alpine 3.20,
// each unpacked once into a rootfs alone.
func cacheEnv(t *testing.T) *env {
	e := twoImages(t)
	for _, img := range [][]string{{"debian", "bookworm"}, {"alpine", "3.20"}} {
		r := e.runRaw("--rootfs", filepath.Join(e.dir, img[0]), "-d", img[0], "-r", img[1], "-a", "amd64",
			"--server", e.srv.Host, "--keyring", e.srv.KeyFile)
		if r.code != 0 {
			t.Fatalf("fill the cache:\n%s", r)
		}
	}
	return e
}

// cachedImage is an entry of `cache list --format json`.
type cachedImage struct {
	Dist, Release, Arch, Variant, Build, Status, Problem, Action string
	Size                                                         int64
	Fetched, Expires                                             *time.Time
	Expired                                                      bool
}

func cacheJSON(t *testing.T, e *env, args ...string) ([]cachedImage, result) {
	t.Helper()
	r := e.runRaw(append(append([]string{"cache"}, args...), "--format", "json")...)
	var got []cachedImage
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("cache %q: %v\n%s", args, err, r)
	}
	return got, r
}

func TestCacheListVerify(t *testing.T) {
	e := cacheEnv(t)
	got, r := cacheJSON(t, e, "list")
	if r.code != 0 || len(got) != 2 {
		t.Fatalf("cache list:\n%s", r)
	}
	alpine, debian := got[0], got[1]
	rootfs, _ := os.Stat(filepath.Join(e.cacheDir(), "rootfs.tar.xz"))
	if debian.Dist != "debian" || debian.Build != "20261120_05:24" || debian.Status != "verified" || debian.Expired ||
		debian.Size != rootfs.Size() || debian.Fetched == nil || debian.Expires == nil || !debian.Expires.After(time.Now()) {
		t.Errorf("debian: %+v", debian)
	}
	if alpine.Dist != "alpine" || alpine.Release != "3.20" || alpine.Status != "verified" {
		t.Errorf("alpine: %+v", alpine)
	}
	text := e.runRaw("cache", "list")
	if text.code != 0 || !strings.HasPrefix(text.stdout, "DIST ") || !strings.Contains(text.stdout, "20261121_13:00") {
		t.Errorf("cache list:\n%s", text)
	}
	if only, r := cacheJSON(t, e, "list", "-dalpine"); len(only) != 1 || only[0].Dist != "alpine" {
		t.Errorf("cache list -dalpine:\n%s", r)
	}
	if r := e.runRaw("cache", "verify", "--keyring", e.srv.KeyFile); r.code != 0 || r.stderr != "" {
		t.Errorf("cache verify:\n%s", r)
	}
	// The images were signed by the test server's key, not the built-in
	// one: their evidence proves nothing to a run that trusts only that.
	e.mustFail(e.runRaw("cache", "verify"), "2 of 2 cached images failed verification")

	// A rootfs changed after it was stored fails verification; the other
	// entry still verifies.
	p := filepath.Join(e.cacheDir(), "rootfs.tar.xz")
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, r = cacheJSON(t, e, "verify", "--keyring", e.srv.KeyFile)
	e.mustFail(r, "1 of 2 cached images failed verification: debian/bookworm/amd64/default")
	if len(got) != 2 || got[1].Status != "damaged" || !strings.Contains(got[1].Problem, "does not match the SHA256 recorded") || got[0].Status != "verified" {
		t.Errorf("cache verify: %+v", got)
	}
	text = e.runRaw("cache", "verify", "--keyring", e.srv.KeyFile)
	if !strings.Contains(text.stdout, "damaged: ") {
		t.Errorf("cache verify:\n%s", text)
	}
	if r := e.runRaw("cache", "verify", "-d", "alpine", "--keyring", e.srv.KeyFile); r.code != 0 {
		t.Errorf("cache verify -d alpine (intact):\n%s", r)
	}
	e.mustFail(e.runRaw("cache", "list", "extra"), `list takes no arguments, not "extra"`)
	e.mustFail(e.runRaw("cache", "verify", "--format"), "option --format needs a value")
}

func TestCachePruneFlush(t *testing.T) {
	e := cacheEnv(t)
	alpineDir := filepath.Join(e.cache, "download", "alpine", "3.20", "amd64", "default")
	// A download left behind beside alpine's entry.
	stage := filepath.Join(filepath.Dir(alpineDir), ".default.stage")
	if err := os.MkdirAll(stage, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(stage, "rootfs.tar.xz.partial"), []byte("part"), 0o644)
	// debian was fetched 10 days ago.
	old := time.Now().Add(-10 * 24 * time.Hour)
	if err := os.Chtimes(filepath.Join(e.cacheDir(), "build_id"), old, old); err != nil {
		t.Fatal(err)
	}

	got, r := cacheJSON(t, e, "prune", "--older-than", "7d", "--dry-run")
	if r.code != 0 || len(got) != 2 || got[0].Action != "would remove leftover download" || got[1].Action != "would remove" {
		t.Errorf("prune --dry-run: %+v\n%s", got, r)
	}
	if _, err := os.Stat(filepath.Join(stage, "rootfs.tar.xz.partial")); err != nil {
		t.Errorf("--dry-run removed the leftover download: %v", err)
	}
	got, r = cacheJSON(t, e, "prune")
	if r.code != 0 || got[0].Action != "removed leftover download" || got[1].Action != "kept" {
		t.Errorf("prune: %+v\n%s", got, r)
	}
	if _, err := os.Stat(stage); !os.IsNotExist(err) {
		t.Errorf("the leftover download is still there: %v", err)
	}
	if _, err := os.Stat(alpineDir); err != nil {
		t.Errorf("prune removed a good entry: %v", err)
	}
	got, r = cacheJSON(t, e, "prune", "--older-than=7d")
	if r.code != 0 || got[0].Action != "kept" || got[1].Action != "removed" {
		t.Errorf("prune --older-than=7d: %+v\n%s", got, r)
	}
	if _, err := os.Stat(e.cacheDir()); !os.IsNotExist(err) {
		t.Errorf("debian is still cached: %v", err)
	}
	// An expired entry goes without --older-than (past the cache's cap of
	// 30 days; the image's own expiry is inside its kept meta tarball).
	expire(t, alpineDir)
	if got, r = cacheJSON(t, e, "list"); len(got) != 1 || !got[0].Expired {
		t.Errorf("list of an expired entry: %+v\n%s", got, r)
	}
	if got, r = cacheJSON(t, e, "prune"); len(got) != 1 || got[0].Action != "removed" {
		t.Errorf("prune of an expired entry: %+v\n%s", got, r)
	}
	if got, _ := cacheJSON(t, e, "list"); len(got) != 0 {
		t.Errorf("after prune: %+v", got)
	}
	e.mustFail(e.runRaw("cache", "prune", "--older-than", "7 days"), `--older-than must be an age such as 7d, 36h or 90m, not "7 days"`)
	e.mustFail(e.runRaw("cache", "prune", "--older-than", "-1h"), "--older-than must be an age")
}

func TestCacheFlush(t *testing.T) {
	e := cacheEnv(t)
	e.mustFail(e.runRaw("cache", "flush"), "cache flush needs -d, -r, -a or --variant to choose images, or --all")
	e.mustFail(e.runRaw("cache", "flush", "--all", "-d", "debian"), "cache flush needs -d, -r, -a or --variant to choose images, or --all (not both)")
	got, r := cacheJSON(t, e, "flush", "-d", "debian", "--dry-run")
	if r.code != 0 || len(got) != 1 || got[0].Action != "would remove" {
		t.Errorf("flush --dry-run: %+v\n%s", got, r)
	}
	// An entry another run holds is left alone, and said so.
	lock, err := os.OpenFile(filepath.Join(filepath.Dir(e.cacheDir()), ".default.lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	got, r = cacheJSON(t, e, "flush", "-d", "debian")
	e.mustFail(r, "in use by another run, not removed: debian/bookworm/amd64/default")
	if len(got) != 1 || got[0].Status != "in use" || got[0].Action != "" {
		t.Errorf("flush of a locked entry: %+v", got)
	}
	lock.Close()
	if _, err := os.Stat(e.cacheDir()); err != nil {
		t.Errorf("a locked entry was flushed: %v", err)
	}
	if r := e.runRaw("cache", "flush", "-d", "debian"); r.code != 0 || !strings.Contains(r.stdout, "removed") {
		t.Errorf("flush -d debian:\n%s", r)
	}
	if _, err := os.Stat(e.cacheDir()); !os.IsNotExist(err) {
		t.Errorf("debian is still cached: %v", err)
	}
	if got, r := cacheJSON(t, e, "flush", "--all"); r.code != 0 || len(got) != 1 || got[0].Dist != "alpine" {
		t.Errorf("flush --all: %+v\n%s", got, r)
	}
	if got, r := cacheJSON(t, e, "list"); r.code != 0 || len(got) != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("an empty cache lists as []: %+v\n%s", got, r)
	}
}

// TestFlushCacheAlone: --flush-cache without a container points to cache
// flush, and touches nothing.
func TestFlushCacheAlone(t *testing.T) {
	e := cacheEnv(t)
	e.mustFail(e.runRaw(e.image("--flush-cache")...), "--flush-cache without a container: to remove cached images, run lxc-download cache flush")
	if _, err := os.Stat(e.cacheDir()); err != nil {
		t.Errorf("the cache lost its entry: %v", err)
	}
}
