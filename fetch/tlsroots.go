package fetch

import (
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// androidCertDirs hold the CA certificates of Android, where a linux
// binary finds none of the files Go looks for (Go reads these only when
// built for GOOS=android): the system's, then those the user added.
var androidCertDirs = []string{"/system/etc/security/cacerts", "/data/misc/keychain/certs-added"}

// Limits on what is read as a CA file: a system bundle is a few hundred
// kilobytes.
const maxCAFileSize = 16 << 20

// trustedRoots picks the certificate authorities HTTPS servers are checked
// against, so that HTTPS is verified on every host:
//  1. the file of Options.CACert, alone;
//  2. Options.RootCAs;
//  3. the system's (nil: Go's own lookup, which honours SSL_CERT_FILE and
//     SSL_CERT_DIR), when it has any;
//  4. Android's certificate directories;
//  5. the roots built into the program (Mozilla's, through
//     golang.org/x/crypto/x509roots/fallback), for hosts with none at all.
func trustedRoots(o *Options) (*x509.CertPool, error) {
	if o.CACert != "" {
		return readCAFile(o.CACert)
	}
	if o.RootCAs != nil {
		return o.RootCAs, nil
	}
	sys, err := x509.SystemCertPool()
	if err == nil && !sys.Equal(x509.NewCertPool()) {
		return nil, nil
	}
	return hostlessRoots(androidCertDirs), nil
}

// hostlessRoots are the roots for a host where Go finds no system roots:
// the certificates in dirs, else the built-in set.
func hostlessRoots(dirs []string) *x509.CertPool {
	pool := x509.NewCertPool()
	found := false
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if !e.Type().IsRegular() {
				continue
			}
			if data, err := readLimited(filepath.Join(dir, e.Name())); err == nil && pool.AppendCertsFromPEM(data) {
				found = true
			}
		}
	}
	if found {
		return pool
	}
	for root := range bundle.Roots() {
		cert, err := x509.ParseCertificate(root.Certificate)
		if err != nil {
			continue
		}
		if root.Constraint != nil {
			pool.AddCertWithConstraint(cert, root.Constraint)
		} else {
			pool.AddCert(cert)
		}
	}
	return pool
}

// readCAFile reads a PEM file of CA certificates (--ca-cert).
func readCAFile(path string) (*x509.CertPool, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, fmt.Errorf("read CA certificates: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("read CA certificates: %s holds no PEM certificate", path)
	}
	return pool, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCAFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxCAFileSize {
		return nil, fmt.Errorf("%s is larger than %d MiB", path, maxCAFileSize>>20)
	}
	return data, nil
}
