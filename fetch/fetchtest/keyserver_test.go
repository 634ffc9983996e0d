package fetchtest

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
)

func TestKeyserver(t *testing.T) {
	key, err := NewKey("signer")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewKey("other")
	k, err := NewKeyserver(key)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	c := client(t, k.CAFile)
	fpr := Fingerprint(key)

	lookup := func(base, search string) (response, *openpgp.Entity) {
		t.Helper()
		r := get(t, c, base+LookupPath+"?op=get&options=mr&search="+search)
		if r.status != 200 {
			return r, nil
		}
		ring, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(r.body))
		if err != nil || len(ring) != 1 {
			t.Fatalf("answer is not one armored key: %v\n%s", err, r.body)
		}
		if ring[0].PrivateKey != nil {
			t.Error("the keyserver handed out a private key")
		}
		return r, ring[0]
	}

	for _, c := range []struct{ base, search string }{
		{k.URL, "0x" + fpr},
		{k.URL, strings.ToLower(fpr)},
		{k.URL, "0x" + fpr[24:]}, // long key id
		{k.HTTPURL, "0x" + fpr},
	} {
		r, got := lookup(c.base, c.search)
		if got == nil || Fingerprint(got) != fpr {
			t.Errorf("%s search=%s: %d", c.base, c.search, r.status)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/pgp-keys" {
			t.Errorf("Content-Type %q", ct)
		}
	}
	if !strings.HasPrefix(k.HKP, "hkp://127.0.0.1:") || !strings.HasPrefix(k.HKPS, "hkps://127.0.0.1:") {
		t.Errorf("HKP %q HKPS %q", k.HKP, k.HKPS)
	}
	if r, _ := lookup(k.URL, "0x"+Fingerprint(other)); r.status != 404 {
		t.Errorf("unknown key: %d", r.status)
	}
	if r, _ := lookup(k.URL, "nonsense"); r.status != 400 {
		t.Errorf("bad search: %d", r.status)
	}
	if r := get(t, c, k.URL+LookupPath+"?op=index&search=0x"+fpr); r.status != 501 {
		t.Errorf("op=index: %d", r.status)
	}

	// A keyserver answering with another key than the one asked for.
	k.Substitute("0x"+fpr, other)
	if _, got := lookup(k.URL, "0x"+fpr); got == nil || Fingerprint(got) != Fingerprint(other) {
		t.Error("Substitute had no effect")
	}
	k.Substitute(fpr, nil)
	k.Add(other)
	if _, got := lookup(k.URL, "0x"+Fingerprint(other)); got == nil || Fingerprint(got) != Fingerprint(other) {
		t.Error("Add had no effect")
	}

	k.FailN(http.StatusServiceUnavailable, 1)
	if r, _ := lookup(k.URL, "0x"+fpr); r.status != 503 {
		t.Errorf("FailN: %d", r.status)
	}
	if _, got := lookup(k.URL, "0x"+fpr); got == nil {
		t.Error("after FailN ran out")
	}
	k.Fail(500)
	for range 2 {
		if r, _ := lookup(k.URL, "0x"+fpr); r.status != 500 {
			t.Errorf("Fail: %d", r.status)
		}
	}
	k.ClearFaults()

	k.SetDown(true)
	for _, base := range []string{k.URL, k.HTTPURL} {
		if _, err := c.Get(base + LookupPath + "?op=get&search=0x" + fpr); err == nil {
			t.Errorf("%s answers while down", base)
		}
	}
	k.SetDown(false)
	if _, got := lookup(k.HTTPURL, "0x"+fpr); got == nil {
		t.Error("back up")
	}
	if n := len(k.Requests()); n < 10 {
		t.Errorf("log has %d requests", n)
	}
}
