package fetchtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"sync"
	"time"
)

// testPKI is the certificate authority of every server this process
// starts, and the one certificate they all present (valid for 127.0.0.1,
// ::1 and localhost): a client that trusts one server's CAFile trusts its
// mirror and keyserver too, as on the real network with public roots.
var testPKI = sync.OnceValues(func() (*pki, error) { return newPKI("fetchtest CA") })

// untrustedPKI is another certificate authority, which nobody trusts, and
// a certificate of it for the same names: what an attacker on the path
// presents.
var untrustedPKI = sync.OnceValues(func() (*pki, error) { return newPKI("fetchtest attacker CA") })

// newPKI makes a certificate authority named caName and a certificate it
// signed for 127.0.0.1, ::1 and localhost.
func newPKI(caName string) (*pki, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: caName, Organization: []string{"lxc-download tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	return &pki{
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		cert:  tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: leafKey},
		pool:  func() *x509.CertPool { p := x509.NewCertPool(); p.AddCert(ca); return p }(),
	}, nil
}

type pki struct {
	caPEM []byte
	cert  tls.Certificate
	pool  *x509.CertPool
}

// CertPool holds the certificate authority of the servers of this
// package, for an in-process client's tls.Config.RootCAs. Each call gives
// a new pool, which the caller may add to.
func CertPool() (*x509.CertPool, error) {
	p, err := testPKI()
	if err != nil {
		return nil, err
	}
	return p.pool.Clone(), nil
}
