package fetch

import (
	"context"
	"fmt"
	"time"

	"github.com/lxc/lxc-download/compat"
)

// StreamsResult is what FetchStreams got: the server's simplestreams,
// parsed, and whether they are signed.
type StreamsResult struct {
	// Index is streams/v1/index.json and Streams the image catalogue it
	// names (streams/v1/images.json).
	Index   *compat.StreamsIndex
	Streams *compat.Streams
	// Signed is set when both files came with detached signatures
	// (FILE.gpg) that verified with the keyring; SignedAt is then the
	// older of the two signatures' times. Unsigned streams are a
	// discovery aid only: what they name is trusted only through the
	// build directory's signed SHA256SUMS.
	Signed   bool
	SignedAt time.Time
	// IndexData, ImagesData and their signatures (nil when unsigned) are
	// the files as served, for a mirror to publish unchanged; ImagesPath
	// is the catalogue's path below the server root.
	IndexData, IndexSig, ImagesData, ImagesSig []byte
	ImagesPath                                 string
	// Validators are the ETag and Last-Modified of the files, by path,
	// for FetchStreamsIf (set by FetchStreamsIf and VerifyStreams only).
	Validators Validators
}

// FetchStreams downloads the server's simplestreams from the primary
// server: the index, then the image catalogue it names, each with its
// detached signature (.gpg) when the server publishes one. With Validate,
// the signatures must either both be absent (the streams are then
// unsigned, and Signed is false) or both verify with the keyring, and be
// no older than Options.MaxIndexAge: a signature that is there but does not
// verify is an error, never a reason to go on unsigned. A server without
// simplestreams answers with a *StatusError of code 404 (IsNotFound).
func (c *Client) FetchStreams(ctx context.Context) (*StreamsResult, error) {
	r, _, err := c.FetchStreamsIf(ctx, nil)
	return r, err
}

// BuildSums downloads the SHA256SUMS of entry's build directory from the
// primary server and, with Validate, its signature SHA256SUMS.asc, and
// returns the sums by file name, for a caller to compare with what the
// streams say of the build before it downloads it. signed says the sums
// verified with the keyring; unsigned sums (a server that publishes no
// SHA256SUMS.asc, or a run without validation) are returned too, but are
// no evidence of anything. A build directory without SHA256SUMS answers a
// *StatusError of code 404: the build is gone, or the server signs each
// file instead, which FetchImage tells apart. A signature that is there
// but does not verify is an error.
func (c *Client) BuildSums(ctx context.Context, entry compat.Entry) (sums map[string]string, signed bool, err error) {
	files := []smallFile{{entry.File("SHA256SUMS"), maxSumsSize}}
	if c.o.Validate {
		files = append(files, smallFile{entry.File("SHA256SUMS.asc"), maxSignatureSize})
	}
	got := c.getSmallAll(ctx, files)
	if got[0].err != nil {
		return nil, false, got[0].err
	}
	if c.o.Validate {
		switch sig, err := got[1].data, got[1].err; {
		case isNotFound(err):
		case err != nil:
			return nil, false, err
		default:
			if _, err := verifyDetached(c.o.Keyring, "SHA256SUMS", got[0].data, sig, c.o.now); err != nil {
				return nil, false, err
			}
			signed = true
		}
	}
	if sums, err = ParseSHA256SUMS(got[0].data); err != nil {
		return nil, false, fmt.Errorf("%s: %w", c.urlFor(entry.File("SHA256SUMS")), err)
	}
	return sums, signed, nil
}
