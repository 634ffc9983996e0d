package cmd_test

// -4 and -6, and a file:// server: the real binary against fetchtest and
// a mirror tree written from it.

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIPVersionOptions: -4 and -6 are taken in getopt's forms, keep the
// connection to their IP version, and exclude each other.
func TestIPVersionOptions(t *testing.T) {
	e := newEnv(t)
	srv := []string{"--server", e.srv.Host, "--keyring", e.srv.KeyFile}
	for _, form := range [][]string{{"-4"}, {"-l4"}, {"-4", "-4"}} {
		args := append(append([]string{"--list"}, form...), srv...)
		if r := e.runRaw(args...); r.code != 0 || !strings.Contains(r.stdout, "bookworm") {
			t.Errorf("%q:\n%s", form, r)
		}
	}
	before := len(e.srv.Requests())
	// (Not the listing the runs above kept: it would need no network.)
	r := e.runRaw(append([]string{"--list", "-6", "--index-ttl", "off"}, srv...)...)
	e.mustFail(r, "not an address of IPv6 (-6)")
	if len(e.srv.Requests()) != before {
		t.Error("-6 reached the IPv4 server")
	}
	e.mustFail(e.runRaw(append([]string{"--list", "-46"}, srv...)...), "-4 and -6 exclude each other")
	e.mustFail(e.runRaw(append([]string{"--list", "--4"}, srv...)...), "unknown option --4")

	// An IPv6-only listener, reached with -6 and without.
	host6, err := e.srv.Listen("[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	for _, opt := range [][]string{{"-6"}, nil} {
		args := append([]string{"--list", "--server", host6, "--keyring", e.srv.KeyFile}, opt...)
		if r := e.runRaw(args...); r.code != 0 || !strings.Contains(r.stdout, "bookworm") {
			t.Errorf("%s %q:\n%s", host6, opt, r)
		}
	}
}

// TestFileServer: a container is created from a mirror tree on disk, the
// web server being gone; a file missing from the tree fails cleanly.
func TestFileServer(t *testing.T) {
	needRoot(t, "the rootfs is unpacked with its owners")
	e := newEnv(t)
	tree := filepath.Join(e.dir, "usb stick")
	if err := e.srv.WriteTree(tree); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(e.dir, "keyring.asc")
	data, err := os.ReadFile(e.srv.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keys, data, 0o644); err != nil {
		t.Fatal(err)
	}
	host := e.srv.Host
	e.srv.Close()
	if c, err := net.Dial("tcp", host); err == nil {
		c.Close()
		t.Fatal("the web server still answers")
	}
	server := "file://" + strings.ReplaceAll(tree, " ", "%20")
	r := e.run("-d", "debian", "-r", "bookworm", "-a", "amd64", "--server", server, "--keyring", keys)
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	if _, err := os.Stat(filepath.Join(e.rootfs, "etc")); err != nil {
		t.Errorf("rootfs not unpacked: %v", err)
	}

	e.newContainer("c2")
	os.RemoveAll(e.cache)
	var rootfs string
	filepath.Walk(tree, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Name() == "rootfs.tar.xz" {
			rootfs = p
		}
		return nil
	})
	if err := os.Remove(rootfs); err != nil {
		t.Fatal(err)
	}
	r = e.run("-d", "debian", "-r", "bookworm", "-a", "amd64", "--server", server, "--keyring", keys)
	e.mustFail(r, "image removed from the server")
}
