package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
)

func TestRun(t *testing.T) {
	envFile := filepath.Join(t.TempDir(), "env")
	stop := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() { done <- run(envFile, stop) }()
	var data []byte
	for i := 0; i < 100 && len(data) == 0; i++ {
		select {
		case err := <-done:
			t.Fatalf("run ended early: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		data, _ = os.ReadFile(envFile)
	}
	env := parseEnv(t, data)
	for _, k := range []string{"LXC_DOWNLOAD_SERVER", "LXC_DOWNLOAD_KEYRING", "SSL_CERT_FILE"} {
		if env[k] == "" {
			t.Fatalf("env file lacks %s:\n%s", k, data)
		}
	}
	if files, _ := filepath.Glob(envFile + "*"); len(files) != 1 {
		t.Errorf("temporary files left next to the env file: %v", files)
	}

	// The settings are enough to fetch and verify the index.
	pem, err := os.ReadFile(env["SSL_CERT_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	fetch := func(p string) []byte {
		resp, err := c.Get("https://" + env["LXC_DOWNLOAD_SERVER"] + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
		return b
	}
	index, sig := fetch("/meta/1.0/index-system.7"), fetch("/meta/1.0/index-system.7.asc")
	kf, err := os.Open(env["LXC_DOWNLOAD_KEYRING"])
	if err != nil {
		t.Fatal(err)
	}
	ring, err := openpgp.ReadArmoredKeyRing(kf)
	kf.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openpgp.CheckArmoredDetachedSignature(ring, bytes.NewReader(index), bytes.NewReader(sig), nil); err != nil {
		t.Errorf("index signature: %v", err)
	}
	for _, want := range []string{"debian;bookworm;amd64;", "debian;bookworm;arm64;", "alpine;", "ubuntu;"} {
		if !strings.Contains(string(index), want) {
			t.Errorf("index lacks %q:\n%s", want, index)
		}
	}

	stop <- syscall.SIGTERM
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(env["SSL_CERT_FILE"])); !os.IsNotExist(err) {
		t.Errorf("server directory left behind: %v", err)
	}
}

// parseEnv reads the env file the way `set -a; . FILE` would, with sh where
// there is one.
func parseEnv(t *testing.T, data []byte) map[string]string {
	t.Helper()
	env := map[string]string{}
	if sh, err := exec.LookPath("sh"); err == nil {
		f := filepath.Join(t.TempDir(), "env")
		os.WriteFile(f, data, 0o644)
		out, err := exec.Command(sh, "-c", `set -a; . "$1"; set +a; printf '%s\n' "$LXC_DOWNLOAD_SERVER" "$LXC_DOWNLOAD_KEYRING" "$SSL_CERT_FILE"`, "sh", f).Output()
		if err != nil {
			t.Fatalf("sourcing the env file: %v", err)
		}
		v := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
		env["LXC_DOWNLOAD_SERVER"], env["LXC_DOWNLOAD_KEYRING"], env["SSL_CERT_FILE"] = v[0], v[1], v[2]
		return env
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = strings.Trim(v, "'")
		}
	}
	return env
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:4443":  "127.0.0.1:4443",
		"/tmp/a b/ca.pem": "'/tmp/a b/ca.pem'",
		"it's":            `'it'\''s'`,
		"":                "''",
		"/x/$HOME/`id`":   "'/x/$HOME/`id`'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestWriteAtomicError(t *testing.T) {
	err := writeAtomic(filepath.Join(t.TempDir(), "no", "such", "dir", "env"), []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "write env file") {
		t.Errorf("err = %v", err)
	}
}

// TestBinary runs the command as `make demo` does and stops it with
// SIGTERM, as `kill PID` does.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "demoserver")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	envFile := filepath.Join(dir, "env")
	cmd := exec.Command(bin, "-env", envFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var data []byte
	for i := 0; i < 200 && len(data) == 0; i++ {
		time.Sleep(50 * time.Millisecond)
		data, _ = os.ReadFile(envFile)
	}
	if len(data) == 0 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("no env file\n%s", stderr.String())
	}
	env := parseEnv(t, data)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, stderr.String())
	}
	if _, err := os.Stat(filepath.Dir(env["SSL_CERT_FILE"])); !os.IsNotExist(err) {
		t.Errorf("server directory left behind: %v", err)
	}
	if !strings.Contains(stderr.String(), "serving 4 images at https://"+env["LXC_DOWNLOAD_SERVER"]) {
		t.Errorf("stderr: %s", stderr.String())
	}

	if err := exec.Command(bin).Run(); err == nil {
		t.Error("no -env: exit 0")
	}
}
