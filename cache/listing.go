package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Listing copies are what a listing last read from a server (its index and
// simplestreams, with their signatures and validators, as the caller
// encodes them), kept in ROOT/download/.listing/ under a name derived from
// the server, so that a repeated listing needs no network, or only a
// conditional request, and a server that cannot be reached still lists.
// They are signed files: the caller verifies them again before every use.
// The store keeps them under the same trust checks as its entries.

// listingDir is the directory of the listing copies, below download/; its
// leading dot keeps it apart from distribution names.
const listingDir = ".listing"

// MaxListingSize bounds a listing copy: an index and a catalogue with
// their signatures, some tens of megabytes at most.
const MaxListingSize = 128 << 20

// listingName is the file of server's copy.
func listingName(server string) string {
	h := sha256.Sum256([]byte(server))
	return hex.EncodeToString(h[:12]) + ".json"
}

// ReadListing returns the listing copy kept for server and when it was
// saved; an error that errors.Is finds fs.ErrNotExist in when there is
// none.
func (c Cache) ReadListing(server string) ([]byte, time.Time, error) {
	d, err := c.openDir(false, "download", listingDir)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("read listing copy: %w", err)
	}
	defer d.close()
	b, st, err := readAllAt(d.fd, listingName(server), MaxListingSize)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			err = fs.ErrNotExist
		}
		return nil, time.Time{}, fmt.Errorf("read listing copy: %s: %w", d.join(listingName(server)), err)
	}
	if int64(len(b)) > MaxListingSize {
		return nil, time.Time{}, fmt.Errorf("read listing copy: %s is larger than %d bytes", d.join(listingName(server)), int64(MaxListingSize))
	}
	return b, time.Unix(st.Mtim.Unix()), nil
}

// WriteListing replaces the listing copy of server with data, atomically.
func (c Cache) WriteListing(server string, data []byte) error {
	if int64(len(data)) > MaxListingSize {
		return fmt.Errorf("save listing copy: %d bytes, more than %d", len(data), int64(MaxListingSize))
	}
	d, err := c.openDir(true, "download", listingDir)
	if err != nil {
		return fmt.Errorf("save listing copy: %w", spaceHint(err))
	}
	defer d.close()
	name := listingName(server)
	tmp := name + ".tmp-" + randomSuffix()
	if err := writeFileAt(d.fd, tmp, data, 0o644); err != nil {
		unix.Unlinkat(d.fd, tmp, 0)
		return fmt.Errorf("save listing copy: %s: %w", d.path, spaceHint(err))
	}
	if err := unix.Renameat(d.fd, tmp, d.fd, name); err != nil {
		unix.Unlinkat(d.fd, tmp, 0)
		return fmt.Errorf("save listing copy: %w", &os.LinkError{Op: "rename", Old: d.join(tmp), New: d.join(name), Err: err})
	}
	return nil
}
