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
// return anything but an "xz: " error; that NewReader and NewStreamReader
// accept the same inputs (but for those over the memory budget, which
// NewStreamReader may not know the block sizes of) and decode them alike;
// and that whatever they decode, ulikunitz/xz decodes alike.
func FuzzNewReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		o := Options{Workers: 3, MemoryBudget: 16 << 20}
		streamed, streamErr := fuzzStream(t, data, o)
		got, err := fuzzFile(t, data, o)
		var le *LimitError
		switch {
		case err == nil && streamErr == nil:
			if !bytes.Equal(got, streamed) {
				t.Fatalf("decoded %d bytes, NewStreamReader %d, and they differ", len(got), len(streamed))
			}
		case errors.Is(err, errTooBig) || errors.Is(streamErr, errTooBig):
			return
		case err == nil && !errors.As(streamErr, &le):
			t.Fatalf("NewReader decodes %d bytes, NewStreamReader fails: %v", len(got), streamErr)
		case streamErr == nil && !errors.As(err, &le):
			t.Fatalf("NewStreamReader decodes %d bytes, NewReader fails: %v", len(streamed), err)
		}
		if err != nil {
			return
		}

		// ulikunitz/xz allocates the dictionary a header declares, so
		// only inputs with sane ones go to it.
		l, perr := parse(bytes.NewReader(data), int64(len(data)))
		if perr != nil {
			t.Fatalf("NewReader accepted what parse refuses: %v", perr)
		}
		for _, b := range l.blocks {
			if b.dictSize > 64<<20 {
				return
			}
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

// errTooBig is the error of fuzzFile and fuzzStream for output over
// fuzzMaxOutput.
var errTooBig = errors.New("too big")

// fuzzFile decodes data with NewReader, checking its errors are xz
// errors; output over fuzzMaxOutput is errTooBig.
func fuzzFile(t *testing.T, data []byte, o Options) ([]byte, error) {
	r, err := NewReader(bytes.NewReader(data), int64(len(data)), o)
	if err != nil {
		if !strings.HasPrefix(err.Error(), "xz: ") {
			t.Fatalf("NewReader: %v", err)
		}
		return nil, err
	}
	defer r.Close()
	out, tooBig, err := readBounded(r)
	if err != nil && !strings.HasPrefix(err.Error(), "xz: ") {
		t.Fatalf("NewReader Read: %v", err)
	}
	if err == nil && tooBig {
		err = errTooBig
	}
	return out, err
}

// fuzzStream decodes data with NewStreamReader, checking its errors are
// xz errors; output over fuzzMaxOutput is errTooBig.
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
		err = errTooBig
	}
	return out, err
}
