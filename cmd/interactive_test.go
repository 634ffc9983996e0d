package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// TestInteractive: with -d, -r or -a missing and a person at the terminal,
// the list is printed and the missing ones are asked for, in the shell
// template's words and order.
func TestInteractive(t *testing.T) {
	srv, err := fetchtest.NewServer(fetchtest.DefaultImage())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dir := t.TempDir()
	path, rootfs := filepath.Join(dir, "c1"), filepath.Join(dir, "c1", "rootfs")
	os.MkdirAll(rootfs, 0o755)
	os.WriteFile(filepath.Join(path, "config"), []byte("lxc.net.0.type = empty\n"), 0o640)
	env := map[string]string{"LXC_CACHE_PATH": filepath.Join(dir, "cache")}

	var out, errb bytes.Buffer
	s := IO{
		Stdin:       strings.NewReader("debian\nbookworm\n"),
		Stdout:      &out,
		Stderr:      &errb,
		Interactive: true,
		Getenv:      func(k string) string { return env[k] },
	}
	code := Main([]string{"lxc-download", "--name=c1", "--path=" + path, "--rootfs=" + rootfs,
		"-a", "amd64", "--server", srv.Host, "--keyring", srv.KeyFile, "--ca-cert", srv.CAFile}, s)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	got := out.String()
	listEnd := strings.Index(got, "---\n\nDistribution: \nRelease: \n\n")
	if listEnd < 0 || !strings.Contains(got[:listEnd], "debian           bookworm") {
		t.Errorf("want the list, then the questions for what is missing (not Architecture):\n%s", got)
	}
	if b, _ := os.ReadFile(filepath.Join(rootfs, "etc/hostname")); string(b) != "c1\n" {
		t.Errorf("etc/hostname %q", b)
	}

	// An empty answer is an error, not a guess.
	out.Reset()
	errb.Reset()
	s.Stdin = strings.NewReader("\n")
	if code := Main([]string{"lxc-download", "--name=c1", "--path=" + path, "--rootfs=" + rootfs,
		"--server", srv.Host, "--keyring", srv.KeyFile, "--ca-cert", srv.CAFile}, s); code != 1 ||
		!strings.Contains(errb.String(), "ERROR: no distribution given") {
		t.Errorf("empty answer: exit %d, stderr %q", code, errb.String())
	}
}
