package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// server is the test image server publishing the input as the rootfs of
// debian/bookworm/amd64/default, signed, with the default image's meta.
type server struct {
	srv       *fetchtest.Server
	host      string // host:port, as --server takes it
	caFile    string // the CA certificate that signed its TLS certificate
	keyFile   string // the public key that signed the image
	imagePath string // "images/debian/bookworm/amd64/default/BUILD/"
	rate      int64
}

func startServer(input string, rate int64) (*server, error) {
	rootfs, err := os.ReadFile(input)
	if err != nil {
		return nil, err
	}
	img := fetchtest.DefaultImage()
	srv, err := fetchtest.NewServer(img)
	if err != nil {
		return nil, fmt.Errorf("start the image server: %w", err)
	}
	s := &server{srv: srv, host: srv.Host, caFile: srv.CAFile, keyFile: srv.KeyFile, rate: rate,
		imagePath: strings.TrimPrefix(fetchtest.ImageDir(img), "/")}
	// The server signs the replacement and updates SHA256SUMS.
	srv.SetSigned(fetchtest.ImageDir(img)+"rootfs.tar.xz", rootfs)
	return s, nil
}

// limit turns the rate limit of the cold case on or off.
func (s *server) limit(on bool) {
	if on {
		s.srv.SetRateLimit(s.rate)
	} else {
		s.srv.SetRateLimit(0)
	}
}

func (s *server) close() { s.srv.Close() }
