package cmd_test

// The simplestreams in a template run: release aliases and pinned builds,
// the real binary against fetchtest.

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// TestAlias: a release the index does not have resolves through the
// aliases, says what it chose, and is cached under the real release; an
// unsigned alias is warned about; an alias to a release the signed index
// does not have finds nothing; a release the index has asks nothing of
// the streams.
func TestAlias(t *testing.T) {
	t.Parallel()
	t.Run("signed", func(t *testing.T) {
		t.Parallel()
		e := streamsEnv(t, fetchtest.StreamsOptions{})
		r := e.run("-d", "debian", "-r", "12", "-a", "amd64", "--server", e.srv.Host, "--keyring", e.srv.KeyFile)
		if r.code != 0 || !strings.Contains(r.stdout, "\nUsing release bookworm for 12 (alias debian/12)\n") || r.stderr != "" {
			t.Fatalf("%s", r)
		}
		if !strings.Contains(r.stdout, "(20261120_05:24) container") {
			t.Errorf("not the index's build of bookworm:\n%s", r)
		}
		if b, err := os.ReadFile(filepath.Join(e.cacheDir(), "build_id")); err != nil || strings.TrimSpace(string(b)) != newBuild {
			t.Errorf("cached under bookworm: %q, %v", b, err)
		}
		// The second time, from the cache of bookworm.
		e.newContainer("c2")
		r = e.run("-d", "debian", "-r", "12", "-a", "amd64", "--server", e.srv.Host, "--keyring", e.srv.KeyFile)
		if r.code != 0 || !strings.Contains(r.stdout, "Using release bookworm for 12") || !strings.Contains(r.stdout, "Using image from local cache") {
			t.Errorf("%s", r)
		}
	})
	t.Run("unsigned", func(t *testing.T) {
		t.Parallel()
		e := streamsEnv(t, fetchtest.StreamsOptions{Unsigned: true})
		r := e.run("-d", "debian", "-r", "12", "-a", "amd64", "--server", e.srv.Host, "--keyring", e.srv.KeyFile)
		if r.code != 0 || !strings.Contains(r.stdout, "Using release bookworm for 12") {
			t.Fatalf("%s", r)
		}
		if w := stderrLines(r, "WARNING: "); len(w) != 1 || !strings.Contains(w[0], "unsigned simplestreams") {
			t.Errorf("want a warning about the unsigned alias:\n%s", r)
		}
	})
	t.Run("not in the index", func(t *testing.T) {
		t.Parallel()
		// Unsigned streams whose alias 12 names a release the index does
		// not have.
		e := streamsEnv(t, fetchtest.StreamsOptions{Unsigned: true, Aliases: map[string]string{
			"debian:bookworm:amd64:default": "debian/bookworm",
			"debian:sid:amd64:default":      "debian/12",
		}})
		sid := fetchtest.NewImage("debian", "sid", "amd64", "default", "20261119_05:24")
		if err := e.srv.AddRetainedBuild(sid); err != nil {
			t.Fatal(err)
		}
		r := e.run("-d", "debian", "-r", "12", "-a", "amd64", "--server", e.srv.Host, "--keyring", e.srv.KeyFile)
		e.mustFail(r, `no release "sid"`)
		if !strings.Contains(r.stdout, "Using release sid for 12") {
			t.Errorf("%s", r)
		}
		if _, err := os.Lstat(filepath.Join(e.cache, "download", "debian", "sid")); err == nil {
			t.Errorf("the cache has a place for sid, which the index does not have")
		}
	})
	t.Run("exact", func(t *testing.T) {
		t.Parallel()
		e := streamsEnv(t, fetchtest.StreamsOptions{})
		if r := e.run(e.image()...); r.code != 0 || strings.Contains(r.stdout, "alias") {
			t.Fatalf("%s", r)
		}
		if got := e.srv.RequestsFor(fetchtest.StreamsIndexPath); len(got) != 0 {
			t.Errorf("a run for a release the index has asked for the streams: %v", got)
		}
		e.newContainer("c2")
		r := e.run("-d", "debian", "-r", "11", "-a", "amd64", "--server", e.srv.Host, "--keyring", e.srv.KeyFile)
		e.mustFail(r, `Couldn't find a matching image: no release "11" for debian`)
	})
}

var createdBuild = regexp.MustCompile(`\((\d{8}_\d{2}:\d{2})\) container`)

// created is the build a run's create message names.
func created(r result) string {
	m := createdBuild.FindStringSubmatch(r.stdout)
	if m == nil {
		return ""
	}
	return m[1]
}

// TestPinnedBuild: --build creates from a retained build, verified by its
// own signed SHA256SUMS; it is allowed although older than the build seen,
// lowers nothing remembered, and is never kept in the cache, which a
// pinned run uses only when it holds exactly that build.
func TestPinnedBuild(t *testing.T) {
	t.Parallel()
	e := streamsEnv(t, fetchtest.StreamsOptions{})
	r := e.run(e.image()...)
	if r.code != 0 || created(r) != newBuild {
		t.Fatalf("%s", r)
	}
	oldRootfs := fetchtest.ImageDir(oldImage()) + "rootfs.tar.xz"

	e.newContainer("c2")
	r = e.run(e.image("--build", oldBuild)...)
	if r.code != 0 || created(r) != oldBuild || r.stderr != "" {
		t.Fatalf("pinned older build:\n%s", r)
	}
	if !strings.Contains(r.stdout, "Using build "+oldBuild+" of debian/bookworm/amd64/default (--build; not kept in the cache)") {
		t.Errorf("does not say it is pinned:\n%s", r)
	}
	if b, _ := os.ReadFile(filepath.Join(e.cacheDir(), "build_id")); strings.TrimSpace(string(b)) != newBuild {
		t.Errorf("the cache holds %q after a pinned run, want %s still", b, newBuild)
	}
	seen, err := os.ReadFile(filepath.Join(filepath.Dir(e.cacheDir()), ".default.seen"))
	if err != nil || !bytes.Contains(seen, []byte(`"build":"`+newBuild+`"`)) {
		t.Errorf("what is remembered after a pinned run: %s, %v", seen, err)
	}
	if got, want := dirNames(t, e.path), dirNames(t, filepath.Join(e.dir, "lxc", "c1")); !slices.Equal(got, want) {
		t.Errorf("the pinned run left %q in the container directory, the first run %q", got, want)
	}

	// The cached build, pinned: from the cache, nothing downloaded.
	sent := len(e.srv.RequestsFor(fetchtest.ImageDir(fetchtest.DefaultImage()) + "rootfs.tar.xz"))
	e.newContainer("c3")
	r = e.run(e.image("--build", newBuild)...)
	if r.code != 0 || created(r) != newBuild || !strings.Contains(r.stdout, "Using image from local cache") {
		t.Errorf("pinned cached build:\n%s", r)
	}
	if n := len(e.srv.RequestsFor(fetchtest.ImageDir(fetchtest.DefaultImage()) + "rootfs.tar.xz")); n != sent {
		t.Errorf("the cached build was downloaded again")
	}
	// The older build again: downloaded again, not cached.
	before := len(e.srv.RequestsFor(oldRootfs))
	e.newContainer("c4")
	if r = e.run(e.image("--build", oldBuild)...); r.code != 0 || created(r) != oldBuild {
		t.Errorf("%s", r)
	}
	if n := len(e.srv.RequestsFor(oldRootfs)); n <= before {
		t.Errorf("the pinned build came from somewhere other than the server")
	}
	// And a run without --build still gets the newest.
	e.newContainer("c5")
	if r = e.run(e.image()...); r.code != 0 || created(r) != newBuild {
		t.Errorf("%s", r)
	}
}

// TestPinnedBuildFailures: a build the server does not have, or no longer
// has, names the builds it retains; a catalogue whose sha256 or size
// disagrees with the build is refused; unsigned streams may not move the
// build to another directory; a bad --build is a usage error. Nothing is
// left in the container or the cache.
func TestPinnedBuildFailures(t *testing.T) {
	t.Parallel()
	oldDir := fetchtest.ImageDir(oldImage())
	retained := "the builds it retains: " + newBuild + ", " + oldBuild
	for _, c := range []struct {
		name  string
		opts  fetchtest.StreamsOptions
		build string
		edit  func(t *testing.T, e *env)
		want  string
		// early: refused before the rootfs is downloaded
		early bool
	}{
		{name: "never there", build: "20250101_00:00",
			want: "build 20250101_00:00 of debian/bookworm/amd64/default is not on the server (any more); " + retained},
		{name: "gone", build: oldBuild, edit: func(t *testing.T, e *env) {
			// Still listed, but every file of the directory answers 404.
			for _, p := range e.srv.Paths() {
				if strings.HasPrefix(p, oldDir) {
					e.srv.Remove(p)
				}
			}
		}, want: "build " + oldBuild + " of debian/bookworm/amd64/default is listed in the simplestreams but gone from the server"},
		{name: "sha256", build: oldBuild, edit: func(t *testing.T, e *env) {
			tamperOldItem(t, e, "sha256", strings.Repeat("ab", 32), true)
		}, want: "the simplestreams give rootfs.tar.xz the sha256 " + strings.Repeat("ab", 32) + ", but its signed SHA256SUMS has ", early: true},
		{name: "sha256 unsigned", opts: fetchtest.StreamsOptions{Unsigned: true}, build: oldBuild, edit: func(t *testing.T, e *env) {
			tamperOldItem(t, e, "sha256", strings.Repeat("ab", 32), false)
		}, want: "the simplestreams give rootfs.tar.xz the sha256 " + strings.Repeat("ab", 32)},
		{name: "sha256 without SHA256SUMS", build: oldBuild, edit: func(t *testing.T, e *env) {
			// Only the files' own signatures: the sum is checked
			// after the download.
			e.srv.Remove(oldDir + "SHA256SUMS")
			e.srv.Remove(oldDir + "SHA256SUMS.asc")
			tamperOldItem(t, e, "sha256", strings.Repeat("ab", 32), true)
		}, want: "the simplestreams give rootfs.tar.xz the sha256 " + strings.Repeat("ab", 32) + ", but the verified download has "},
		{name: "size", build: oldBuild, edit: func(t *testing.T, e *env) {
			tamperOldItem(t, e, "size", "100", true)
		}, want: "the simplestreams give rootfs.tar.xz of build " + oldBuild + " a size of 100 bytes, and the server sends more"},
		{name: "forged directory", opts: fetchtest.StreamsOptions{Unsigned: true}, build: oldBuild, edit: func(t *testing.T, e *env) {
			// An image of another distribution, signed by the same key,
			// whose build has the same id.
			other := fetchtest.NewImage("alpine", "3.20", "amd64", "default", oldBuild)
			if err := e.srv.AddRetainedBuild(other); err != nil {
				t.Fatal(err)
			}
			rootfs, _ := e.srv.Get(fetchtest.ImageDir(other) + "rootfs.tar.xz")
			tamperOldItem(t, e, "path", strconv.Quote(strings.TrimPrefix(fetchtest.ImageDir(other), "/")+"rootfs.tar.xz"), false)
			tamperOldItem(t, e, "sha256", fmt.Sprintf("%x", sha256.Sum256(rootfs)), false)
		}, early: true, want: "the simplestreams, which are not signed, put build " + oldBuild + " of debian/bookworm/amd64/default in /images/alpine/3.20/amd64/default/" + oldBuild + "/, not in /images/debian/bookworm/amd64/default/" + oldBuild + "/"},
		{name: "tampered catalogue", build: oldBuild, edit: func(t *testing.T, e *env) {
			// The .gpg is a real signature by the server's key, of the
			// catalogue as it was.
			e.srv.TamperStreams(fetchtest.StreamsImagesPath, func(b []byte) []byte {
				return bytes.Replace(b, []byte(`"Debian"`), []byte(`"Debain"`), 1)
			}, false)
		}, want: "Invalid signature for images.json", early: true},
		{name: "no streams", build: oldBuild, edit: func(t *testing.T, e *env) {
			e.srv.Remove(fetchtest.StreamsIndexPath)
		}, want: "--build needs the server's simplestreams"},
		{name: "bad id", build: "yesterday", want: `--build must be a build id such as 20261120_05:24, not "yesterday"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := streamsEnv(t, c.opts)
			if c.edit != nil {
				c.edit(t, e)
			}
			r := e.run(e.image("--build", c.build)...)
			e.mustFail(r, c.want)
			if c.early {
				for _, req := range e.srv.Requests() {
					if strings.HasSuffix(req.Path, "/rootfs.tar.xz") {
						t.Errorf("%s was downloaded before the run refused the build", req.Path)
					}
				}
			}
			noUnverifiedInCache(t, e, nil, false)
			if entries, _ := os.ReadDir(e.path); len(entries) != 3 {
				t.Errorf("the container directory holds %d entries after the run, want config, partial and rootfs", len(entries))
			}
		})
	}
	t.Run("with --list", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.mustFail(e.runRaw("--list", "--build", oldBuild), "--build is for creating a container")
	})
}

// tamperOldItem sets field of the rootfs item of oldBuild in images.json
// to the JSON value v, re-signing the catalogue when resign (the streams
// are then signed and wrong) and else leaving the old signature.
func tamperOldItem(t *testing.T, e *env, field, v string, resign bool) {
	t.Helper()
	if field == "sha256" && !strings.HasPrefix(v, `"`) {
		v = strconv.Quote(v)
	}
	e.srv.TamperStreams(fetchtest.StreamsImagesPath, func(b []byte) []byte {
		var doc map[string]any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		var value any
		if err := json.Unmarshal([]byte(v), &value); err != nil {
			t.Fatal(err)
		}
		p := doc["products"].(map[string]any)["debian:bookworm:amd64:default"].(map[string]any)
		item := p["versions"].(map[string]any)[oldBuild].(map[string]any)["items"].(map[string]any)["root.tar.xz"].(map[string]any)
		item[field] = value
		out, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}, resign)
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}
