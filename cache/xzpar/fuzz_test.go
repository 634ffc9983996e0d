package xzpar

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// fuzzMaxOutput bounds what one fuzz input may decode to: LZMA2 can
// expand a few bytes into megabytes.
const fuzzMaxOutput = 16 << 20

// readBounded reads r to its end, or fails once it yields more than
// fuzzMaxOutput bytes.
func readBounded(r io.Reader) ([]byte, bool, error) {
	out, err := io.ReadAll(io.LimitReader(r, fuzzMaxOutput+1))
	return out, len(out) > fuzzMaxOutput, err
}

// FuzzNewReader checks that no input makes the decoders panic, hang or
// return anything but an "xz: " error, and that whatever NewReader
// decodes is what ulikunitz/xz's serial decoder and NewStreamReader decode
// from the same input.
func FuzzNewReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		o := Options{Workers: 3, MaxBlockSize: 4 << 20}
		streamed, streamErr := fuzzStream(t, data, o)
		r, err := NewReader(bytes.NewReader(data), int64(len(data)), o)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "xz: ") {
				t.Fatalf("NewReader: %v", err)
			}
			return
		}
		got, tooBig, err := readBounded(r)
		if cerr := r.Close(); cerr != nil {
			t.Fatalf("Close: %v", cerr)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "xz: ") {
			t.Fatalf("Read: %v", err)
		}
		if err != nil || tooBig {
			return
		}
		if streamErr == nil && !bytes.Equal(got, streamed) {
			t.Fatalf("decoded %d bytes, NewStreamReader %d, and they differ", len(got), len(streamed))
		}

		// ulikunitz/xz allocates the dictionary a header declares, so
		// only inputs with sane ones go to it.
		l, perr := parse(bytes.NewReader(data), int64(len(data)))
		if perr != nil {
			t.Fatalf("NewReader accepted what parse refuses: %v", perr)
		}
		if l.maxDictSize > 64<<20 {
			return
		}
		xr, err := xz.ReaderConfig{DictCap: lzma.MinDictCap}.NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		want, tooBig, err := readBounded(xr)
		if err != nil || tooBig {
			return
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("decoded %d bytes, serial decoder %d, and they differ", len(got), len(want))
		}
	})
}

// fuzzStream decodes data with NewStreamReader, checking its errors are
// xz errors; output over fuzzMaxOutput counts as an error.
func fuzzStream(t *testing.T, data []byte, o Options) ([]byte, error) {
	r, err := NewStreamReader(bytes.NewReader(data), o)
	if err != nil {
		if !strings.HasPrefix(err.Error(), "xz: ") {
			t.Fatalf("NewStreamReader: %v", err)
		}
		return nil, err
	}
	defer r.Close()
	out, tooBig, err := readBounded(r)
	if err != nil && !strings.HasPrefix(err.Error(), "xz: ") {
		t.Fatalf("NewStreamReader Read: %v", err)
	}
	if err == nil && tooBig {
		err = errors.New("too big")
	}
	return out, err
}
