package fetch_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
)

// treeRig is a mirror tree written from the rig's server, and a client of
// it as a file:// server.
type treeRig struct {
	*rig
	tree string
}

func newTreeRig(t *testing.T) *treeRig {
	t.Helper()
	r := &treeRig{rig: newRig(t), tree: filepath.Join(t.TempDir(), "mirror tree")}
	if err := r.srv.WriteTree(r.tree); err != nil {
		t.Fatal(err)
	}
	return r
}

// client reads the tree; the web server is closed first, so that nothing
// can come from it.
func (r *treeRig) client(edit ...func(*fetch.Options)) *fetch.Client {
	r.t.Helper()
	o := r.options()
	r.srv.Close()
	o.Server = "file://" + strings.ReplaceAll(r.tree, " ", "%20")
	for _, e := range edit {
		e(&o)
	}
	c, err := fetch.New(o)
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// file is the tree's path of a server path.
func (r *treeRig) file(p string) string { return filepath.Join(r.tree, filepath.FromSlash(p)) }

// TestFileTree: a mirror tree is read straight from disk, verified as a
// server's files are.
func TestFileTree(t *testing.T) {
	r := newTreeRig(t)
	meta, rootfs := r.served("meta.tar.xz"), r.served("rootfs.tar.xz")
	c := r.client()
	ix, err := c.FetchIndex(context.Background(), compat.System)
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.Index.Entries) != 1 || ix.Index.Entries[0] != r.entry() || ix.SignedAt.IsZero() {
		t.Errorf("index %+v", ix)
	}
	if want := "file://" + strings.ReplaceAll(r.tree, " ", "%20") + "/meta/1.0/index-system.7"; ix.URL() != want {
		t.Errorf("URL %s, want %s", ix.URL(), want)
	}
	img, err := c.FetchImage(context.Background(), r.entry(), r.dir)
	if err != nil {
		t.Fatal(err)
	}
	if !img.Verified || len(img.Evidence.SHA256SUMS) == 0 {
		t.Errorf("not verified: %+v", img)
	}
	for _, f := range []struct {
		path string
		want []byte
	}{{img.Meta.Path, meta}, {img.Rootfs.Path, rootfs}} {
		got, err := os.ReadFile(f.path)
		if err != nil || !bytes.Equal(got, f.want) {
			t.Errorf("%s: not the tree's file (%v)", f.path, err)
		}
	}
	if !strings.Contains(r.verbose.String(), "Download file: file://") {
		t.Errorf("verbose output: %s", r.verbose)
	}
}

// TestFileTreeTampered: verification is unchanged: a file of the tree
// that is not the one signed is refused.
func TestFileTreeTampered(t *testing.T) {
	r := newTreeRig(t)
	if err := os.WriteFile(r.file(r.path("rootfs.tar.xz")), append(r.served("rootfs.tar.xz"), 0), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := r.fetch(r.client())
	wantClass(t, err, fetch.ClassVerification, fetch.KindNone)
	r.checkNoFinal()
}

// TestFileTreeMissing: a file missing from the tree is a 404, as on a
// web server: the index falls back, and an image's file is "removed".
func TestFileTreeMissing(t *testing.T) {
	r := newTreeRig(t)
	// index-system.7's signature is missing: index-system is used.
	if err := os.Remove(r.file("/meta/1.0/index-system.7.asc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(r.file(r.path("rootfs.tar.xz"))); err != nil {
		t.Fatal(err)
	}
	c := r.client()
	ix, err := c.FetchIndex(context.Background(), compat.System)
	if err != nil || ix.Path != "/meta/1.0/index-system" {
		t.Fatalf("%+v, %v", ix, err)
	}
	_, err = c.FetchImage(context.Background(), r.entry(), r.dir)
	wantErr(t, err, "image removed from the server", "download file://", "rootfs.tar.xz: 404 Not Found")
	wantClass(t, err, fetch.ClassNotFound, fetch.KindNone)
	var se *fetch.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound || !strings.HasPrefix(se.URL, "file:///") {
		t.Errorf("%#v: not a *StatusError 404 of the file", err)
	}
}

// TestFileTreeSymlinks: a symbolic link that stays in the tree is
// followed; one that leads out of it, relative or absolute, or through a
// linked directory, is refused and what it leads to is never read.
func TestFileTreeSymlinks(t *testing.T) {
	outside := t.TempDir()
	for _, tc := range []struct {
		name string
		// link makes rootfs.tar.xz (at p in the tree) a link; tree is
		// the tree's directory.
		link func(t *testing.T, tree, p string)
		ok   bool
	}{
		{"inside", func(t *testing.T, tree, p string) {
			moved := filepath.Join(tree, "pool", "rootfs.tar.xz")
			mustRename(t, p, moved)
			rel, _ := filepath.Rel(filepath.Dir(p), moved)
			mustSymlink(t, rel, p)
		}, true},
		{"relative out", func(t *testing.T, tree, p string) {
			moved := filepath.Join(outside, "rel-rootfs.tar.xz")
			mustRename(t, p, moved)
			rel, _ := filepath.Rel(filepath.Dir(p), moved)
			mustSymlink(t, rel, p)
		}, false},
		{"absolute", func(t *testing.T, tree, p string) {
			moved := filepath.Join(outside, "abs-rootfs.tar.xz")
			mustRename(t, p, moved)
			mustSymlink(t, moved, p)
		}, false},
		{"directory out", func(t *testing.T, tree, p string) {
			images := filepath.Join(tree, "images")
			moved := filepath.Join(outside, "images")
			mustRename(t, images, moved)
			rel, _ := filepath.Rel(tree, moved)
			mustSymlink(t, rel, images)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTreeRig(t)
			p := r.file(r.path("rootfs.tar.xz"))
			if err := os.MkdirAll(filepath.Join(r.tree, "pool"), 0o755); err != nil {
				t.Fatal(err)
			}
			tc.link(t, r.tree, p)
			_, err := r.fetch(r.client())
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, err, "leads out of the tree")
			wantClass(t, err, fetch.ClassServer, fetch.KindNone)
			r.checkNoFinal()
		})
	}
}

func mustRename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// TestFileTreeNotRegular: a fifo in the tree is refused without being
// opened (which would block).
func TestFileTreeNotRegular(t *testing.T) {
	r := newTreeRig(t)
	p := r.file("/meta/1.0/index-system.7")
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.client().FetchIndex(context.Background(), compat.System)
		done <- err
	}()
	select {
	case err := <-done:
		wantErr(t, err, "index-system.7 in the mirror tree", "is not a regular file")
		wantClass(t, err, fetch.ClassServer, fetch.KindNone)
	case <-time.After(10 * time.Second):
		t.Fatal("the fifo was opened")
	}
}

// TestFileTreeAbsent: a tree that is not there (a stick not mounted) is a
// server that cannot be reached.
func TestFileTreeAbsent(t *testing.T) {
	r := newTreeRig(t)
	if err := os.RemoveAll(r.tree); err != nil {
		t.Fatal(err)
	}
	_, err := r.client().FetchIndex(context.Background(), compat.System)
	wantErr(t, err, "the mirror tree "+r.tree+" is not there")
	wantClass(t, err, fetch.ClassUnreachable, fetch.KindTree)
	if !fetch.IsUnreachable(err) || strings.Contains(err.Error(), "attempts") {
		t.Errorf("%v: not unreachable, or retried", err)
	}
}

// TestFileTreeLimits: the tree's files are bounded as downloads are.
func TestFileTreeLimits(t *testing.T) {
	r := newTreeRig(t)
	_, err := r.fetch(r.client(func(o *fetch.Options) { o.MaxRootfsSize = 16 }))
	var sl *fetch.SizeLimitError
	if !errors.As(err, &sl) || !sl.Announced {
		t.Fatalf("%v: not refused by its announced size", err)
	}
	r.checkNoFinal()
}

// TestFileTreeConditional: a listing kept from a tree is "not modified"
// until its file changes.
func TestFileTreeConditional(t *testing.T) {
	r := newTreeRig(t)
	c := r.client()
	first, err := c.FetchIndex(context.Background(), compat.System)
	if err != nil {
		t.Fatal(err)
	}
	if _, nm, err := c.FetchIndexIf(context.Background(), compat.System, first.Validators); err != nil || !nm {
		t.Fatalf("not modified: %v, %v", nm, err)
	}
	p := r.file(first.Path)
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	again, nm, err := c.FetchIndexIf(context.Background(), compat.System, first.Validators)
	if err != nil || nm || again == nil || !bytes.Equal(again.Data, first.Data) {
		t.Fatalf("after a change: %+v, %v, %v", again, nm, err)
	}
}

func TestParseFileServer(t *testing.T) {
	for in, want := range map[string]fetch.Server{
		"file:///srv/mirror":            {Scheme: "file", Prefix: "/srv/mirror"},
		"file:///srv/mirror/":           {Scheme: "file", Prefix: "/srv/mirror"},
		"FILE:///srv//mirror":           {Scheme: "file", Prefix: "/srv/mirror"},
		"file://localhost/srv/mirror":   {Scheme: "file", Prefix: "/srv/mirror"},
		"file:///media/My Stick/lxc":    {Scheme: "file", Prefix: "/media/My%20Stick/lxc"},
		"file:///media/My%20Stick/lxc":  {Scheme: "file", Prefix: "/media/My%20Stick/lxc"},
		"file:///":                      {Scheme: "file"},
		"file:///srv/a%2Fb":             {Scheme: "file", Prefix: "/srv/a/b"},
		"file:///srv/%C3%A9t%C3%A9/lxc": {Scheme: "file", Prefix: "/srv/%C3%A9t%C3%A9/lxc"},
	} {
		got, err := fetch.ParseServer(in)
		if err != nil || got != want {
			t.Errorf("ParseServer(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	s, _ := fetch.ParseServer("file:///media/My%20Stick/lxc")
	if !s.Local() || s.Dir() != "/media/My Stick/lxc" || s.URL("/meta/1.0/index-system") != "file:///media/My%20Stick/lxc/meta/1.0/index-system" {
		t.Errorf("%+v: Local %v, Dir %q, URL %q", s, s.Local(), s.Dir(), s.URL("/meta/1.0/index-system"))
	}
	if s, _ := fetch.ParseServer("file:///"); s.Dir() != "/" {
		t.Errorf("Dir of file:/// is %q", s.Dir())
	}
	if s, _ := fetch.ParseServer("example.org"); s.Local() || s.Dir() != "" {
		t.Errorf("%+v is local", s)
	}
	for in, why := range map[string]string{
		"file://":                "no path",
		"file:relative/path":     "file:///ABSOLUTE/PATH",
		"file:/srv/mirror":       "file:///ABSOLUTE/PATH",
		"file://srv/mirror":      `not of "srv"`,
		"file://example.org/srv": `not of "example.org"`,
		"file:///srv/../etc":     `".." segment`,
		"file:///srv/./x":        `"." segment`,
		"file:///srv/%2e%2e/x":   `".." segment`,
		"file:///srv/x?y":        "query",
		"file:///srv/x#y":        "fragment",
		"file:///srv/%00":        "control character",
		"file:///srv/\x1b[31m":   "control character",
		"file:///srv/%zz":        "escape",
		"file:///srv\\x":         "backslash",
	} {
		got, err := fetch.ParseServer(in)
		if err == nil {
			t.Errorf("ParseServer(%q) = %+v, want an error", in, got)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, why) || !strings.HasPrefix(msg, "invalid server ") || strings.ContainsAny(msg, "\n\x1b") {
			t.Errorf("ParseServer(%q): %q, want one line saying %q", in, msg, why)
		}
	}
}
