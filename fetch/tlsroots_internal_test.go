package fetch

import (
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lxc/lxc-download/fetch/fetchtest"
)

func fetchtestCA(t *testing.T) (*x509.CertPool, []byte) {
	t.Helper()
	s, err := fetchtest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return pool, pem
}

// TestHostlessRoots: on a host without system roots, Android's directories
// are used, and without those the built-in set.
func TestHostlessRoots(t *testing.T) {
	want, pem := fetchtestCA(t)
	dir := t.TempDir()
	// Android's files are PEM with a text dump before it.
	if err := os.WriteFile(filepath.Join(dir, "1234abcd.0"), append([]byte("Certificate:\n  Data: ...\n"), pem...), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "junk"), []byte("not a certificate"), 0o644)
	os.Symlink("/etc/passwd", filepath.Join(dir, "link"))
	if got := hostlessRoots([]string{filepath.Join(dir, "missing"), dir}); !got.Equal(want) {
		t.Error("Android's certificates not used")
	}
	builtin := hostlessRoots([]string{t.TempDir(), filepath.Join(dir, "missing")})
	if builtin.Equal(x509.NewCertPool()) || builtin.Equal(want) {
		t.Error("built-in roots not used")
	}
}

func TestReadCAFile(t *testing.T) {
	want, pem := fetchtestCA(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "ca.pem")
	os.WriteFile(good, pem, 0o644)
	if pool, err := trustedRoots(&Options{CACert: good, RootCAs: x509.NewCertPool()}); err != nil || !pool.Equal(want) {
		t.Errorf("%v", err)
	}
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("hello"), 0o644)
	for _, p := range []string{bad, filepath.Join(dir, "missing.pem")} {
		if _, err := New(Options{Server: "example.org", CACert: p}); err == nil || !strings.Contains(err.Error(), "CA certificates") {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// TestTrustedRootsFromEnvironment: the system's roots, as SSL_CERT_FILE
// and SSL_CERT_DIR say, come first; with none, the host-less ones. Go
// reads the system's once per process, so each case is a child process.
func TestTrustedRootsFromEnvironment(t *testing.T) {
	_, pem := fetchtestCA(t)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem, 0o644)
	for _, c := range []struct{ file, want string }{
		{ca, "system"},
		{filepath.Join(t.TempDir(), "none.pem"), "hostless"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTrustedRootsChild$", "-test.v")
		cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+c.file, "SSL_CERT_DIR="+t.TempDir(), "LXCDL_ROOTS_CHILD="+c.want)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestTrustedRootsChild") {
			t.Errorf("%s: %v\n%s", c.want, err, out)
		}
	}
}

func TestTrustedRootsChild(t *testing.T) {
	want := os.Getenv("LXCDL_ROOTS_CHILD")
	if want == "" {
		t.Skip("run by TestTrustedRootsFromEnvironment")
	}
	androidCertDirs = nil
	pool, err := trustedRoots(&Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := map[bool]string{true: "system", false: "hostless"}[pool == nil]; got != want {
		t.Errorf("roots: %s, want %s", got, want)
	}
}
