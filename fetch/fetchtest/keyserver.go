package fetchtest

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// Keyserver is an HKP keyserver on one port of the loopback interface,
// answering HTTPS (same certificate authority as Server) and plain HTTP.
// It answers
//
//	GET /pks/lookup?op=get&options=mr&search=0xFINGERPRINT
//
// with the armored public key whose fingerprint (or 16- or 8-digit key id)
// is searched, and 404 when it has none. Its methods are safe for
// concurrent use.
type Keyserver struct {
	Host     string // "127.0.0.1:PORT"
	URL      string // "https://" + Host
	HKPS     string // "hkps://" + Host
	HTTPHost string // for plain HTTP: the same port as Host
	HTTPURL  string // "http://" + HTTPHost
	HKP      string // "hkp://" + HTTPHost
	CAFile   string // PEM of the certificate authority, for SSL_CERT_FILE
	Dir      string // a temporary directory it owns; Close removes it

	site *site

	mu         sync.Mutex
	keys       []*openpgp.Entity
	substitute map[string]*openpgp.Entity // by upper-case fingerprint
}

// LookupPath is the path of HKP lookups.
const LookupPath = "/pks/lookup"

// NewKeyserver starts a keyserver holding keys. Call Close when done.
func NewKeyserver(keys ...*openpgp.Entity) (*Keyserver, error) {
	p, err := testPKI()
	if err != nil {
		return nil, fmt.Errorf("fetchtest: certificates: %w", err)
	}
	dir, err := os.MkdirTemp("", "fetchtest-keyserver-")
	if err != nil {
		return nil, fmt.Errorf("fetchtest: %w", err)
	}
	k := &Keyserver{Dir: dir, CAFile: filepath.Join(dir, "ca.pem"), keys: keys, substitute: map[string]*openpgp.Entity{}}
	if err := os.WriteFile(k.CAFile, p.caPEM, 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("fetchtest: %w", err)
	}
	k.site, err = newSite(k.lookup)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	k.Host, k.HTTPHost = k.site.host, k.site.host
	k.URL, k.HKPS = "https://"+k.Host, "hkps://"+k.Host
	k.HTTPURL, k.HKP = "http://"+k.HTTPHost, "hkp://"+k.HTTPHost
	return k, nil
}

// Close stops the keyserver and removes Dir.
func (k *Keyserver) Close() {
	k.site.close()
	os.RemoveAll(k.Dir)
}

// Add makes the keyserver hold key too.
func (k *Keyserver) Add(key *openpgp.Entity) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys = append(k.keys, key)
}

// Substitute makes lookups of fingerprint (hexadecimal, any case) answer
// with key instead: a keyserver handing out a different key than the one
// asked for. A nil key undoes it.
func (k *Keyserver) Substitute(fingerprint string, key *openpgp.Entity) {
	k.mu.Lock()
	defer k.mu.Unlock()
	fpr := strings.ToUpper(strings.TrimPrefix(strings.TrimPrefix(fingerprint, "0x"), "0X"))
	if key == nil {
		delete(k.substitute, fpr)
	} else {
		k.substitute[fpr] = key
	}
}

// Fail answers every lookup with status until ClearFaults.
func (k *Keyserver) Fail(status int) { k.FailN(status, 0) }

// FailN answers the next n lookups with status.
func (k *Keyserver) FailN(status int, n int) {
	k.site.addFault(fault{path: "/", times: n, status: status, dropAfter: -1, stallAfter: -1})
}

// SetDown makes the keyserver close every connection while down is true,
// as an unreachable keyserver would.
func (k *Keyserver) SetDown(down bool) {
	k.site.setHTTPSDown(down)
	k.site.setPlainDown(down)
}

// ClearFaults removes the faults set by Fail and FailN.
func (k *Keyserver) ClearFaults() { k.site.clearFaults(nil) }

// Requests returns the log of the requests received so far.
func (k *Keyserver) Requests() []Request { return k.site.requests() }

func (k *Keyserver) lookup(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != LookupPath {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	if op := q.Get("op"); op != "get" {
		http.Error(w, "fetchtest: op "+op+" not implemented", http.StatusNotImplemented)
		return
	}
	search := strings.ToUpper(q.Get("search"))
	search = strings.TrimPrefix(search, "0X")
	if _, err := hex.DecodeString(search); err != nil || (len(search) != 8 && len(search) != 16 && len(search) != 40 && len(search) != 64) {
		http.Error(w, "fetchtest: search for a fingerprint or key id", http.StatusBadRequest)
		return
	}
	k.mu.Lock()
	key := k.substitute[search]
	if key == nil {
		for _, e := range k.keys {
			if strings.HasSuffix(Fingerprint(e), search) {
				key = e
				break
			}
		}
	}
	k.mu.Unlock()
	if key == nil {
		http.Error(w, "No results found", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/pgp-keys")
	w.Write(ArmoredPublicKey(key))
}
