package fetch

import (
	"context"
	"fmt"
	pathpkg "path"

	"github.com/lxc/lxc-download/compat"
)

// Index downloads, verifies (with Validate) and parses the image index for
// mode: meta/1.0/index-MODE.7 first, then meta/1.0/index-MODE when the
// compat-level file or its signature does not exist. The index and its
// signature always come from the primary server.
func (c *Client) Index(ctx context.Context, mode compat.Mode) (*compat.Index, error) {
	base := "meta/1.0/index-" + string(mode)
	compatName := fmt.Sprintf("%s.%d", base, compat.Level)
	data, err := c.signedFile(ctx, compatName)
	if isNotFound(err) {
		data, err = c.signedFile(ctx, base)
	}
	if err != nil {
		return nil, err
	}
	ix, err := compat.ParseIndex(data)
	if err != nil {
		return nil, fmt.Errorf("parse index: %w", err)
	}
	return ix, nil
}

// Index files and signatures are small; anything larger is not one.
const (
	maxIndexSize     = 32 << 20
	maxSignatureSize = 1 << 20
	maxSumsSize      = 1 << 20
)

// signedFile fetches path from the primary server and, with Validate, its
// signature path.asc, and verifies it. A missing file or signature is a
// *StatusError with code 404.
func (c *Client) signedFile(ctx context.Context, path string) ([]byte, error) {
	if !c.o.Validate {
		return c.getSmall(ctx, path, maxIndexSize)
	}
	// The file and its signature at once: one round trip, not two.
	got := c.getSmallAll(ctx, []smallFile{{path, maxIndexSize}, {path + ".asc", maxSignatureSize}})
	data, err := got[0].data, got[0].err
	if err != nil {
		return nil, err
	}
	sig, err := got[1].data, got[1].err
	if err != nil {
		return nil, err
	}
	// Name the file as the user knows it: "Invalid signature for
	// index-system.7", as the GPG-era template said.
	if err := VerifyDetached(c.o.Keyring, pathpkg.Base(path), data, sig); err != nil {
		return nil, err
	}
	return data, nil
}
