package fetchtest

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
)

func newTestServer(t *testing.T, images ...Image) *Server {
	t.Helper()
	if len(images) == 0 {
		images = []Image{DefaultImage()}
	}
	s, err := NewServer(images...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// client trusts the package's CA through CAFile, as a subprocess given
// SSL_CERT_FILE would, and does not follow redirects.
func client(t *testing.T, caFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := CertPool()
	if err != nil {
		t.Fatal(err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CAFile holds no certificate")
	}
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
	err    error // from reading the body
}

func get(t *testing.T, c *http.Client, url string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, body, err}
}

func verify(t *testing.T, keyFile string, data, sig []byte) error {
	t.Helper()
	f, err := os.Open(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ring, err := openpgp.ReadArmoredKeyRing(f)
	if err != nil {
		t.Fatal(err)
	}
	_, err = openpgp.CheckArmoredDetachedSignature(ring, bytes.NewReader(data), bytes.NewReader(sig), nil)
	return err
}

func TestServerPublishesSignedTree(t *testing.T) {
	img := DefaultImage()
	s := newTestServer(t, img)
	c := client(t, s.CAFile)
	dir := ImageDir(img)
	if dir != "/images/debian/bookworm/amd64/default/20261120_05:24/" {
		t.Fatalf("ImageDir %q", dir)
	}
	paths := append(IndexPaths(), dir+"rootfs.tar.xz", dir+"meta.tar.xz", dir+"SHA256SUMS")
	for _, p := range paths {
		r := get(t, c, s.URL+p)
		if r.status != 200 || r.err != nil {
			t.Fatalf("%s: %d %v", p, r.status, r.err)
		}
		sig := get(t, c, s.URL+p+".asc")
		if sig.status != 200 {
			t.Fatalf("%s.asc: %d", p, sig.status)
		}
		if err := verify(t, s.KeyFile, r.body, sig.body); err != nil {
			t.Errorf("%s: signature: %v", p, err)
		}
		if want, _ := s.Get(p); !bytes.Equal(want, r.body) {
			t.Errorf("%s: served bytes differ from Get", p)
		}
	}
	want := "debian;bookworm;amd64;default;20261120_05:24;" + dir + "\n"
	for _, p := range IndexPaths() {
		if b, _ := s.Get(p); string(b) != want {
			t.Errorf("%s = %q, want %q", p, b, want)
		}
	}
	sums, _ := s.Get(dir + "SHA256SUMS")
	for _, name := range []string{"meta.tar.xz", "rootfs.tar.xz"} {
		b, _ := s.Get(dir + name)
		if line := fmt.Sprintf("%x  %s\n", sha256.Sum256(b), name); !strings.Contains(string(sums), line) {
			t.Errorf("SHA256SUMS lacks %q:\n%s", line, sums)
		}
	}
}
