package fetchtest

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
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

func TestSignatureByAnotherKeyFails(t *testing.T) {
	s := newTestServer(t)
	other, err := NewKey("other")
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("debian;bookworm;amd64;default;1;/images/x/\n")
	if err := verify(t, s.KeyFile, data, Sign(other, data)); err == nil {
		t.Error("a signature by another key verified")
	}
	if err := verify(t, s.KeyFile, append(data, 'x'), Sign(s.Key, data)); err == nil {
		t.Error("a signature of other data verified")
	}
	if Fingerprint(s.Key) == Fingerprint(other) || len(Fingerprint(other)) != 40 {
		t.Errorf("fingerprints %s %s", Fingerprint(s.Key), Fingerprint(other))
	}
}

// TestGnuPGVerifies checks the signatures with GnuPG, as the GPG-era shell
// template did, where gpgv is installed.
func TestGnuPGVerifies(t *testing.T) {
	gpg, err1 := exec.LookPath("gpg")
	gpgv, err2 := exec.LookPath("gpgv")
	if err1 != nil || err2 != nil {
		t.Skip("gpg and gpgv are not installed")
	}
	s := newTestServer(t)
	dir := t.TempDir()
	key, _ := os.Open(s.KeyFile)
	defer key.Close()
	dearmor := exec.Command(gpg, "--dearmor")
	dearmor.Stdin = key
	bin, err := dearmor.Output()
	if err != nil {
		t.Fatalf("gpg --dearmor: %v", err)
	}
	ring := filepath.Join(dir, "ring.gpg")
	os.WriteFile(ring, bin, 0o644)
	p := ImageDir(DefaultImage()) + "rootfs.tar.xz"
	data, _ := s.Get(p)
	sig, _ := s.Get(p + ".asc")
	os.WriteFile(filepath.Join(dir, "f"), data, 0o644)
	os.WriteFile(filepath.Join(dir, "f.asc"), sig, 0o644)
	if out, err := exec.Command(gpgv, "--keyring", ring, filepath.Join(dir, "f.asc"), filepath.Join(dir, "f")).CombinedOutput(); err != nil {
		t.Errorf("gpgv: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(dir, "f"), append(data, 0), 0o644)
	if out, err := exec.Command(gpgv, "--keyring", ring, filepath.Join(dir, "f.asc"), filepath.Join(dir, "f")).CombinedOutput(); err == nil {
		t.Errorf("gpgv accepted tampered data\n%s", out)
	}
}

func TestServedRootfsRoundTrip(t *testing.T) {
	img := DefaultImage()
	s := newTestServer(t, img)
	r := get(t, client(t, s.CAFile), s.URL+ImageDir(img)+"rootfs.tar.xz")
	if files := readTarXZ(t, r.body); len(files) != len(img.Rootfs) {
		t.Errorf("%d entries served, want %d", len(files), len(img.Rootfs))
	}
	if ct := r.header.Get("Content-Type"); ct != "application/x-xz" {
		t.Errorf("Content-Type %q", ct)
	}
}

func TestRangeAndValidators(t *testing.T) {
	img := DefaultImage()
	s := newTestServer(t, img)
	c := client(t, s.CAFile)
	p := ImageDir(img) + "rootfs.tar.xz"
	whole, _ := s.Get(p)
	full := get(t, c, s.URL+p)
	etag, lastMod := full.header.Get("ETag"), full.header.Get("Last-Modified")
	if etag == "" || lastMod == "" || full.header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("validators missing: %v", full.header)
	}
	r := get(t, c, s.URL+p, "Range", "bytes=100-")
	if r.status != 206 || !bytes.Equal(r.body, whole[100:]) {
		t.Errorf("Range: %d, %d bytes", r.status, len(r.body))
	}
	r = get(t, c, s.URL+p, "Range", "bytes=100-", "If-Range", etag)
	if r.status != 206 || !bytes.Equal(r.body, whole[100:]) {
		t.Errorf("If-Range with the current ETag: %d", r.status)
	}
	r = get(t, c, s.URL+p, "Range", "bytes=100-", "If-Range", lastMod)
	if r.status != 206 {
		t.Errorf("If-Range with the current date: %d", r.status)
	}

	// New content: the old validators no longer match, and the whole new
	// file comes back.
	changed := append(bytes.Clone(whole), 0)
	s.SetSigned(p, changed)
	for _, ir := range []string{etag, lastMod} {
		r = get(t, c, s.URL+p, "Range", "bytes=100-", "If-Range", ir)
		if r.status != 200 || !bytes.Equal(r.body, changed) {
			t.Errorf("If-Range %s after a change: %d, %d bytes", ir, r.status, len(r.body))
		}
	}
	if r := get(t, c, s.URL+p, "Range", fmt.Sprintf("bytes=%d-", len(changed)+10)); r.status != 416 {
		t.Errorf("range past the end: %d", r.status)
	}
	// HEAD has the length and no body.
	req, _ := http.NewRequest("HEAD", s.URL+p, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ContentLength != int64(len(changed)) {
		t.Errorf("HEAD Content-Length %d", resp.ContentLength)
	}
}

func TestRequestLog(t *testing.T) {
	img := DefaultImage()
	s := newTestServer(t, img)
	c := client(t, s.CAFile)
	dir := ImageDir(img)
	// Index paths start with a slash, so clients ask for //images/...
	r := get(t, c, s.URL+"/"+dir+"meta.tar.xz", "User-Agent", "lxc/6.0.0 compat:7", "Range", "bytes=10-19", "X-LXC-No-GeoIP", "on")
	if r.status != 206 || len(r.body) != 10 {
		t.Fatalf("%d %d", r.status, len(r.body))
	}
	get(t, c, s.HTTPURL+"/meta/1.0/nosuch")
	log := s.Requests()
	if len(log) != 2 {
		t.Fatalf("%d requests logged", len(log))
	}
	got := log[0]
	if got.Method != "GET" || got.Path != dir+"meta.tar.xz" || got.RawPath != "/"+dir+"meta.tar.xz" || !got.TLS ||
		got.Range != "bytes=10-19" || got.UserAgent != "lxc/6.0.0 compat:7" || got.NoGeoIP != "on" ||
		got.Status != 206 || got.Bytes != 10 || got.Header.Get("User-Agent") != got.UserAgent {
		t.Errorf("logged %+v", got)
	}
	if l := log[1]; l.TLS || l.Status != 404 || l.Path != "/meta/1.0/nosuch" {
		t.Errorf("logged %+v", l)
	}
	if n := len(s.RequestsFor("//" + dir + "meta.tar.xz")); n != 1 {
		t.Errorf("RequestsFor: %d", n)
	}
	if n := s.BytesSent(dir + "meta.tar.xz"); n != 10 {
		t.Errorf("BytesSent %d", n)
	}
}

func TestSetSignedRemoveSetIndex(t *testing.T) {
	img := DefaultImage()
	s := newTestServer(t, img)
	c := client(t, s.CAFile)
	dir := ImageDir(img)
	p := dir + "rootfs.tar.xz"
	fetchVerified := func(p string) ([]byte, error) {
		r := get(t, c, s.URL+p)
		sig := get(t, c, s.URL+p+".asc")
		return r.body, verify(t, s.KeyFile, r.body, sig.body)
	}

	// Set: raw, the old signature and sums stand.
	s.Set(p, []byte("garbage"))
	if _, err := fetchVerified(p); err == nil {
		t.Error("Set re-signed")
	}
	sums, _ := s.Get(dir + "SHA256SUMS")
	if strings.Contains(string(sums), fmt.Sprintf("%x", sha256.Sum256([]byte("garbage")))) {
		t.Error("Set updated SHA256SUMS")
	}

	// SetSigned: signature and SHA256SUMS (signed) follow the content.
	s.SetSigned(p, []byte("new content"))
	if b, err := fetchVerified(p); err != nil || string(b) != "new content" {
		t.Errorf("SetSigned: %q %v", b, err)
	}
	sums, err := fetchVerified(dir + "SHA256SUMS")
	if err != nil {
		t.Fatalf("SHA256SUMS signature: %v", err)
	}
	meta, _ := s.Get(dir + "meta.tar.xz")
	want := fmt.Sprintf("%x  meta.tar.xz\n%x  rootfs.tar.xz\n", sha256.Sum256(meta), sha256.Sum256([]byte("new content")))
	if string(sums) != want {
		t.Errorf("SHA256SUMS:\n%s\nwant:\n%s", sums, want)
	}
	// A new file in the directory gets a line of its own.
	s.SetSigned(dir+"rootfs.squashfs", []byte("sq"))
	sums, _ = s.Get(dir + "SHA256SUMS")
	if !strings.HasSuffix(string(sums), fmt.Sprintf("%x  rootfs.squashfs\n", sha256.Sum256([]byte("sq")))) {
		t.Errorf("SHA256SUMS:\n%s", sums)
	}

	s.Remove(p + ".asc")
	if r := get(t, c, s.URL+p+".asc"); r.status != 404 {
		t.Errorf("removed .asc: %d", r.status)
	}
	if r := get(t, c, s.URL+p); r.status != 200 {
		t.Errorf("Remove(.asc) took the file: %d", r.status)
	}

	s.SetIndex("a;b;c;d;e;/images/a/\n")
	for _, ip := range IndexPaths() {
		if b, err := fetchVerified(ip); err != nil || string(b) != "a;b;c;d;e;/images/a/\n" {
			t.Errorf("%s after SetIndex: %q %v", ip, b, err)
		}
	}
}

func TestSetMetaAndAddImage(t *testing.T) {
	img := DefaultImage()
	s := newTestServer(t, img)
	dir := ImageDir(img)
	changed := DefaultImage()
	delete(changed.Meta, "config")
	changed.Meta["config.7"] = "lxc.arch = x86_64\n"
	if err := s.SetMeta(changed); err != nil {
		t.Fatal(err)
	}
	data, _ := s.Get(dir + "meta.tar.xz")
	sig, _ := s.Get(dir + "meta.tar.xz.asc")
	if err := verify(t, s.KeyFile, data, sig); err != nil {
		t.Error(err)
	}
	names := map[string]bool{}
	for _, f := range readTarXZ(t, data) {
		names[f.Name] = true
	}
	if names["config"] || !names["config.7"] || !names["config-user"] {
		t.Errorf("meta after SetMeta: %v", names)
	}
	sums, _ := s.Get(dir + "SHA256SUMS")
	if !strings.Contains(string(sums), fmt.Sprintf("%x  meta.tar.xz", sha256.Sum256(data))) {
		t.Errorf("SHA256SUMS not updated:\n%s", sums)
	}

	newer := DefaultImage()
	newer.Build = "20261121_05:24"
	if err := s.AddImage(newer); err != nil {
		t.Fatal(err)
	}
	index, _ := s.Get(IndexPaths()[0])
	if string(index) != Index(img, newer) {
		t.Errorf("index after AddImage:\n%s", index)
	}
	if _, ok := s.Get(ImageDir(newer) + "rootfs.tar.xz.asc"); !ok {
		t.Error("AddImage published no rootfs signature")
	}
	if n := len(s.Images()); n != 2 {
		t.Errorf("Images: %d", n)
	}
}

func TestCloseRemovesDir(t *testing.T) {
	s, err := NewServer(DefaultImage())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{s.CAFile, s.KeyFile} {
		if !strings.HasPrefix(f, s.Dir) {
			t.Errorf("%s is outside Dir", f)
		}
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
	s.Close()
	s.Close()
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("Dir left after Close: %v", err)
	}
	if _, err := http.Get(s.HTTPURL + "/meta/1.0/index-system"); err == nil {
		t.Error("still serving after Close")
	}
}

func TestClient(t *testing.T) {
	s := newTestServer(t)
	resp, err := s.Client().Get(s.URL + "/meta/1.0/index-system")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("%d", resp.StatusCode)
	}
}

func TestNewServerWithKey(t *testing.T) {
	key, err := NewKey("shared")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServerWithKey(key, DefaultImage())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	index, _ := s.Get(IndexPaths()[0])
	sig, _ := s.Get(IndexPaths()[0] + ".asc")
	if s.Key != key || verify(t, s.KeyFile, index, sig) != nil {
		t.Error("not signed with the given key")
	}
	pub, _ := os.ReadFile(s.KeyFile)
	if !bytes.Equal(pub, ArmoredPublicKey(key)) {
		t.Error("KeyFile is not the given key")
	}
}

func TestPathsAndSetRootfs(t *testing.T) {
	img := DefaultImage()
	s := newTestServer(t, img)
	dir := ImageDir(img)
	want := []string{dir + "SHA256SUMS", dir + "SHA256SUMS.asc", dir + "meta.tar.xz", dir + "meta.tar.xz.asc",
		dir + "rootfs.tar.xz", dir + "rootfs.tar.xz.asc"}
	for _, p := range IndexPaths() {
		want = append(want, p, p+".asc")
	}
	got := s.Paths()
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Paths:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	img.Rootfs = img.Rootfs[:3]
	img.BlockSize = 100
	if err := s.SetRootfs(img); err != nil {
		t.Fatal(err)
	}
	data, _ := s.Get(dir + "rootfs.tar.xz")
	sig, _ := s.Get(dir + "rootfs.tar.xz.asc")
	if len(readTarXZ(t, data)) != 3 || verify(t, s.KeyFile, data, sig) != nil {
		t.Error("SetRootfs did not publish the new rootfs, signed")
	}
	sums, _ := s.Get(dir + "SHA256SUMS")
	if !strings.Contains(string(sums), fmt.Sprintf("%x  rootfs.tar.xz\n", sha256.Sum256(data))) {
		t.Errorf("SHA256SUMS:\n%s", sums)
	}
}

func TestSetIndexSignedAt(t *testing.T) {
	s := newTestServer(t)
	c := client(t, s.CAFile)
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	content := Index(DefaultImage())
	s.SetIndexSignedAt(content, old)
	for _, p := range IndexPaths() {
		data := get(t, c, s.URL+p)
		sig := get(t, c, s.URL+p+".asc")
		if string(data.body) != content {
			t.Errorf("%s: %q", p, data.body)
		}
		if err := verify(t, s.KeyFile, data.body, sig.body); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		block, err := armor.Decode(bytes.NewReader(sig.body))
		if err != nil {
			t.Fatal(err)
		}
		pkt, err := packet.Read(block.Body)
		if err != nil {
			t.Fatal(err)
		}
		if sp, ok := pkt.(*packet.Signature); !ok || !sp.CreationTime.Equal(old) {
			t.Errorf("%s: signature %T made at %v, want %v", p, pkt, sp.CreationTime, old)
		}
	}
}
