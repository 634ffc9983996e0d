package fetchtest

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// Server is an image server on one port of the loopback interface, which
// answers both HTTPS and plain HTTP, serving what the real one publishes:
//
//	/meta/1.0/index-system.7, index-system, index-user.7, index-user
//	/images/DIST/RELEASE/ARCH/VARIANT/BUILD/rootfs.tar.xz, meta.tar.xz, SHA256SUMS
//
// each with a detached armored signature at PATH.asc made with Key. Range
// requests, ETag, Last-Modified and If-Range work as with http.ServeContent.
// Its methods are safe for concurrent use.
type Server struct {
	// Host is "127.0.0.1:PORT", what --server takes.
	Host string
	// URL is "https://" + Host.
	URL string
	// HTTPHost and HTTPURL are for plain HTTP, served on the same port
	// (HTTPHost is Host): a client falling back from https://HOST/ to
	// http://HOST/ reaches the same server.
	HTTPHost string
	HTTPURL  string
	// CAFile is a PEM file with the certificate authority that signed the
	// server's certificate (valid for 127.0.0.1, ::1 and localhost), for
	// SSL_CERT_FILE.
	CAFile string
	// KeyFile is an armored file with Key's public key, for --keyring.
	KeyFile string
	// Key signs the index and every file.
	Key *openpgp.Entity
	// Dir is a temporary directory the server owns; Close removes it.
	Dir string

	site *site

	mu       sync.Mutex
	objects  map[string]*object
	images   []Image
	redirect string
	// redirectHTTP sends HTTPS requests for images to this server's
	// plain HTTP.
	redirectHTTP bool
	streams      *streamsState // nil until EnableStreams (streams.go)
}

type object struct {
	data    []byte
	etag    string
	modTime time.Time
}

// IndexPaths are the paths of the index files, compatibility-level
// variants first.
func IndexPaths() []string {
	return []string{
		fmt.Sprintf("/meta/1.0/index-system.%d", Compat), "/meta/1.0/index-system",
		fmt.Sprintf("/meta/1.0/index-user.%d", Compat), "/meta/1.0/index-user",
	}
}

// ImageDir is the directory of img on the server, as its index line says:
// "/images/DIST/RELEASE/ARCH/VARIANT/BUILD/".
func ImageDir(img Image) string {
	return fmt.Sprintf("/images/%s/%s/%s/%s/%s/", img.Dist, img.Release, img.Arch, img.Variant, img.Build)
}

// IndexLine is img's line in the index, newline included.
func IndexLine(img Image) string {
	return fmt.Sprintf("%s;%s;%s;%s;%s;%s\n", img.Dist, img.Release, img.Arch, img.Variant, img.Build, ImageDir(img))
}

// Index is the index listing images, in order.
func Index(images ...Image) string {
	var b strings.Builder
	for _, img := range images {
		b.WriteString(IndexLine(img))
	}
	return b.String()
}

// NewServer starts a server with images, signed by a key of its own. It
// publishes the same index for system and user mode. Call Close when done.
func NewServer(images ...Image) (*Server, error) {
	key, err := NewKey("fetchtest image server")
	if err != nil {
		return nil, err
	}
	return NewServerWithKey(key, images...)
}

// NewServerWithKey is NewServer signing with key, e.g. one that a
// Keyserver also holds, or one shared by two servers.
func NewServerWithKey(key *openpgp.Entity, images ...Image) (*Server, error) {
	s, err := newServer(key)
	if err != nil {
		return nil, err
	}
	for _, img := range images {
		if err := s.putImage(img); err != nil {
			s.Close()
			return nil, err
		}
	}
	s.mu.Lock()
	s.images = append(s.images, images...)
	s.mu.Unlock()
	s.SetIndex(Index(images...))
	return s, nil
}

func newServer(key *openpgp.Entity) (*Server, error) {
	p, err := testPKI()
	if err != nil {
		return nil, fmt.Errorf("fetchtest: certificates: %w", err)
	}
	dir, err := os.MkdirTemp("", "fetchtest-")
	if err != nil {
		return nil, fmt.Errorf("fetchtest: %w", err)
	}
	s := &Server{Key: key, Dir: dir, objects: map[string]*object{},
		CAFile: filepath.Join(dir, "ca.pem"), KeyFile: filepath.Join(dir, "keyring.asc")}
	if err := os.WriteFile(s.CAFile, p.caPEM, 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("fetchtest: %w", err)
	}
	if err := os.WriteFile(s.KeyFile, ArmoredPublicKey(key), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("fetchtest: %w", err)
	}
	s.site, err = newSite(s.serveContent)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.Host, s.HTTPHost = s.site.host, s.site.host
	s.URL, s.HTTPURL = "https://"+s.Host, "http://"+s.HTTPHost
	return s, nil
}

// Close stops the server, breaks off the requests in progress and
// removes Dir.
func (s *Server) Close() {
	s.site.close()
	os.RemoveAll(s.Dir)
}

// putImage publishes img's files, signed and summed.
func (s *Server) putImage(img Image) error {
	rootfs, err := RootfsTarball(img)
	if err != nil {
		return fmt.Errorf("fetchtest: rootfs of %s: %w", ImageDir(img), err)
	}
	meta, err := MetaTarball(img.Meta)
	if err != nil {
		return fmt.Errorf("fetchtest: meta of %s: %w", ImageDir(img), err)
	}
	dir := ImageDir(img)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putLocked(dir+"rootfs.tar.xz", rootfs)
	s.putLocked(dir+"rootfs.tar.xz.asc", Sign(s.Key, rootfs))
	s.putLocked(dir+"meta.tar.xz", meta)
	s.putLocked(dir+"meta.tar.xz.asc", Sign(s.Key, meta))
	sums := fmt.Sprintf("%x  meta.tar.xz\n%x  rootfs.tar.xz\n", sha256.Sum256(meta), sha256.Sum256(rootfs))
	s.putLocked(dir+"SHA256SUMS", []byte(sums))
	s.putLocked(dir+"SHA256SUMS.asc", Sign(s.Key, []byte(sums)))
	return nil
}

// AddImage publishes another image and rewrites every index variant to
// list all the server's images (undoing SetIndex).
func (s *Server) AddImage(img Image) error {
	if err := s.putImage(img); err != nil {
		return err
	}
	s.mu.Lock()
	s.images = append(s.images, img)
	images := append([]Image(nil), s.images...)
	s.mu.Unlock()
	s.SetIndex(Index(images...))
	return s.rebuildStreams()
}

// Images are the images the server was made with or given by AddImage.
func (s *Server) Images() []Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Image(nil), s.images...)
}

// putLocked stores data at p with validators that change whenever the
// content does: a strong ETag from its hash and a Last-Modified at least a
// second after the previous one, so that If-Range by date also notices.
func (s *Server) putLocked(p string, data []byte) {
	sum := sha256.Sum256(data)
	mod := time.Now().Truncate(time.Second)
	if old := s.objects[p]; old != nil && !mod.After(old.modTime) {
		mod = old.modTime.Add(time.Second)
	}
	s.objects[p] = &object{data: data, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, modTime: mod}
}

// Get returns a copy of what the server serves at p.
func (s *Server) Get(p string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.objects[cleanPath(p)]
	if o == nil {
		return nil, false
	}
	return bytes.Clone(o.data), true
}

// Paths lists every path the server serves, sorted.
func (s *Server) Paths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.objects))
	for p := range s.objects {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Set serves data at p as it is: its signature and checksums are left as
// they were, so they no longer match.
func (s *Server) Set(p string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putLocked(cleanPath(p), bytes.Clone(data))
}

// SetSigned serves data at p with a fresh signature at p.asc and, where
// p's directory has a SHA256SUMS, an updated line for it there, signed
// again: the content is then the only thing that can be wrong.
func (s *Server) SetSigned(p string, data []byte) {
	p = cleanPath(p)
	data = bytes.Clone(data)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putLocked(p, data)
	s.putLocked(p+".asc", Sign(s.Key, data))
	dir, name := path.Split(p)
	sumsPath := dir + "SHA256SUMS"
	old := s.objects[sumsPath]
	if old == nil || name == "SHA256SUMS" || strings.HasSuffix(name, ".asc") {
		return
	}
	line := fmt.Sprintf("%x  %s", sha256.Sum256(data), name)
	var lines []string
	found := false
	for _, l := range strings.Split(strings.TrimRight(string(old.data), "\n"), "\n") {
		if f := strings.Fields(l); len(f) == 2 && strings.TrimPrefix(f[1], "*") == name {
			l, found = line, true
		}
		if l != "" {
			lines = append(lines, l)
		}
	}
	if !found {
		lines = append(lines, line)
	}
	sums := []byte(strings.Join(lines, "\n") + "\n")
	s.putLocked(sumsPath, sums)
	s.putLocked(sumsPath+".asc", Sign(s.Key, sums))
}

// Remove stops serving p (the server answers 404); p.asc stays.
func (s *Server) Remove(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.objects, cleanPath(p))
}

// SetIndex replaces every index variant (system and user, with and
// without the compatibility level) with content, signed. To make one
// variant differ, SetSigned its path (see IndexPaths).
func (s *Server) SetIndex(content string) {
	for _, p := range IndexPaths() {
		s.SetSigned(p, []byte(content))
	}
}

// SetIndexSignedAt is SetIndex with signatures that say they were made at
// t (see SignAt): an old index replayed, or one from a clock ahead.
func (s *Server) SetIndexSignedAt(content string, t time.Time) {
	data := []byte(content)
	sig := SignAt(s.Key, data, t)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range IndexPaths() {
		s.putLocked(p, bytes.Clone(data))
		s.putLocked(p+".asc", sig)
	}
}

// SetMeta replaces the meta.tar.xz of the image with img's dist, release,
// arch, variant and build by one made of img.Meta, signed and summed.
func (s *Server) SetMeta(img Image) error {
	meta, err := MetaTarball(img.Meta)
	if err != nil {
		return fmt.Errorf("fetchtest: meta of %s: %w", ImageDir(img), err)
	}
	s.SetSigned(ImageDir(img)+"meta.tar.xz", meta)
	return nil
}

// SetRootfs replaces the rootfs.tar.xz of img's directory by one made of
// img.Rootfs (in blocks of img.BlockSize), signed and summed.
func (s *Server) SetRootfs(img Image) error {
	rootfs, err := RootfsTarball(img)
	if err != nil {
		return fmt.Errorf("fetchtest: rootfs of %s: %w", ImageDir(img), err)
	}
	s.SetSigned(ImageDir(img)+"rootfs.tar.xz", rootfs)
	return nil
}

// Requests returns the log of every request received so far, in order of
// arrival, over HTTPS and plain HTTP.
func (s *Server) Requests() []Request { return s.site.requests() }

// RequestsFor returns the logged requests for path p.
func (s *Server) RequestsFor(p string) []Request {
	p = cleanPath(p)
	var out []Request
	for _, r := range s.Requests() {
		if r.Path == p {
			out = append(out, r)
		}
	}
	return out
}

// BytesSent is the total of body bytes sent for path p, over every request.
func (s *Server) BytesSent(p string) int64 {
	var n int64
	for _, r := range s.RequestsFor(p) {
		n += r.Bytes
	}
	return n
}

func (s *Server) serveContent(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	s.mu.Lock()
	redirect, redirectHTTP := s.redirect, s.redirectHTTP
	o := s.objects[p]
	s.mu.Unlock()
	geoIP := strings.HasPrefix(p, "/images/") && !strings.EqualFold(r.Header.Get("X-LXC-No-GeoIP"), "on")
	if redirect != "" && geoIP {
		http.Redirect(w, r, redirect+p, http.StatusFound)
		return
	}
	if redirectHTTP && geoIP && r.TLS != nil {
		http.Redirect(w, r, s.HTTPURL+s.site.getPrefix()+p, http.StatusFound)
		return
	}
	if bw, ok := w.(*bodyWriter); ok && bw.plan.endless {
		endless(bw, o)
		return
	}
	if o == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("ETag", o.etag)
	w.Header().Set("Content-Type", contentType(p))
	http.ServeContent(w, r, "", o.modTime, bytes.NewReader(o.data))
}

// endless answers with the object's bytes (none if there is no object),
// then zero bytes until the client goes away or the server closes, with
// no Content-Length. Zeros after an xz stream are valid stream padding, so
// a decoder following the download sees a well-formed file that never
// ends.
func endless(w *bodyWriter, o *object) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	if o != nil {
		if _, err := w.Write(o.data); err != nil {
			return
		}
	}
	zeros := make([]byte, chunk)
	for {
		if _, err := w.Write(zeros); err != nil {
			return
		}
	}
}

func contentType(p string) string {
	switch {
	case strings.HasSuffix(p, ".asc"):
		return "application/pgp-signature"
	case strings.HasSuffix(p, ".xz"):
		return "application/x-xz"
	case strings.HasPrefix(p, "/meta/"), strings.HasSuffix(p, "SHA256SUMS"):
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}

// Client is an HTTP client that trusts the server's certificate, for
// in-process tests.
func (s *Server) Client() *http.Client {
	p, err := testPKI()
	if err != nil {
		panic(err) // the server could not have started
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool}}}
}

// Listen makes the server answer on addr too, HTTPS and plain HTTP alike
// (its certificate is valid for 127.0.0.1, ::1 and localhost), and returns
// the address it listens on: Listen("[::1]:0") gives "[::1]:PORT", an
// IPv6 listener on a port of the kernel's choice, where 127.0.0.1:PORT is
// not this server's. Close stops it too.
func (s *Server) Listen(addr string) (string, error) { return s.site.listen(addr) }

// WriteTree writes every file the server serves below dir, at its path
// (dir/meta/1.0/index-system.7, dir/images/...), with the content served
// now: the layout of a mirror tree, for a file:// server. Directories are
// made as needed (mode 0755); files have mode 0644.
func (s *Server) WriteTree(dir string) error {
	s.mu.Lock()
	files := make(map[string][]byte, len(s.objects))
	for p, o := range s.objects {
		files[p] = o.data
	}
	s.mu.Unlock()
	for p, data := range files {
		rel := filepath.FromSlash(strings.TrimPrefix(p, "/"))
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("fetchtest: %s is not a path below the tree", p)
		}
		name := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return fmt.Errorf("fetchtest: %w", err)
		}
		if err := os.WriteFile(name, data, 0o644); err != nil {
			return fmt.Errorf("fetchtest: %w", err)
		}
	}
	return nil
}
