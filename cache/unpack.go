package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"

	"github.com/lxc/lxc-download/cache/xzpar"
)

// UnpackOptions say how a rootfs tarball is unpacked. The zero value unpacks
// everything with DefaultLimits and says nothing.
type UnpackOptions struct {
	// Excludes are the image's excludes: GNU tar --exclude patterns (with
	// --anchored), matched against entry names from the tarball's root,
	// with or without a leading "./". A matching directory excludes
	// everything below it.
	Excludes []string
	// Userns says the process runs as root of an unprivileged user
	// namespace (LXC's user mode): device nodes cannot be made, and owners
	// outside the namespace's id map cannot be restored; both are skipped
	// with a warning instead of failing.
	Userns bool
	// Warn receives "WARNING: ..." lines, each kind said once. Nil
	// discards them.
	Warn io.Writer
	// Workers is how many xz blocks Unpack decodes in parallel; 0 means one
	// per CPU.
	Workers int
	// MemoryBudget bounds the memory the xz decoder's buffers take, all
	// workers together (xzpar.Options.MemoryBudget); 0 means
	// xzpar.DefaultMemoryBudget(). An archive that cannot be decoded
	// within it fails with an *xzpar.LimitError.
	MemoryBudget int64
	// Limits bound what an archive may ask for; a zero field takes the
	// value of DefaultLimits.
	Limits Limits
	// Progress, if set, is called now and then with the number of
	// compressed bytes consumed so far and the archive's size (-1 when
	// unknown, as for UnpackReader). Calls never overlap.
	Progress func(done, total int64)

	// rootEntry, when set (by RootfsStage), takes the archive's root
	// entry instead of the rootfs directory.
	rootEntry *rootEntry
}

// Limits bound what an untrusted archive can make the extractor do. Going
// over one stops the unpack with a *LimitError naming it.
type Limits struct {
	// MaxEntries is the most entries (of any type) an archive may hold.
	MaxEntries int
	// MaxTotalSize is the most bytes of file content, summed over all
	// regular files (the logical size, for sparse files).
	MaxTotalSize int64
	// MaxFileSize is the largest one regular file may be.
	MaxFileSize int64
	// MaxPathLength is the longest an entry name or link target may be,
	// in bytes.
	MaxPathLength int
	// MaxXattrs is the most extended attributes one entry may carry.
	MaxXattrs int
	// MaxXattrSize is the largest one extended attribute value may be
	// (Linux itself refuses more than 64 KiB).
	MaxXattrSize int
}

// DefaultLimits are generous for real container images (a few GB and a few
// hundred thousand entries) yet keep a hostile archive from filling the disk
// or memory without bound.
var DefaultLimits = Limits{
	MaxEntries:    1 << 20,
	MaxTotalSize:  32 << 30,
	MaxFileSize:   8 << 30,
	MaxPathLength: 4096,
	MaxXattrs:     256,
	MaxXattrSize:  64 << 10,
}

// withDefaults fills the zero fields of l from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxEntries <= 0 {
		l.MaxEntries = d.MaxEntries
	}
	if l.MaxTotalSize <= 0 {
		l.MaxTotalSize = d.MaxTotalSize
	}
	if l.MaxFileSize <= 0 {
		l.MaxFileSize = d.MaxFileSize
	}
	if l.MaxPathLength <= 0 {
		l.MaxPathLength = d.MaxPathLength
	}
	if l.MaxXattrs <= 0 {
		l.MaxXattrs = d.MaxXattrs
	}
	if l.MaxXattrSize <= 0 {
		l.MaxXattrSize = d.MaxXattrSize
	}
	return l
}

// LimitError is the error of an archive that goes over one of its Limits.
type LimitError struct {
	// Limit is the name of the Limits field, such as "MaxTotalSize".
	Limit string
	// Max is the limit's value and Value what the archive asked for.
	Max, Value int64
	// Entry is the name of the entry where the limit was crossed.
	Entry string
}

func (e *LimitError) Error() string {
	what := map[string]string{
		"MaxEntries":    "number of entries",
		"MaxTotalSize":  "total size of files",
		"MaxFileSize":   "file size",
		"MaxPathLength": "path length",
		"MaxXattrs":     "number of extended attributes",
		"MaxXattrSize":  "extended attribute size",
	}[e.Limit]
	return fmt.Sprintf("entry %q: %s %d exceeds the limit of %d (Limits.%s)", e.Entry, what, e.Value, e.Max, e.Limit)
}

// Unpack unpacks archive, a rootfs.tar.xz, into the existing directory
// rootfs. Its xz blocks (several, as written by xz --threads) are decoded
// by o.Workers goroutines in parallel within o.MemoryBudget; decoding
// overlaps with writing the files. Whatever the archive says,
// nothing is written outside rootfs. On error, what was unpacked so far
// stays in rootfs for the caller to remove.
func Unpack(ctx context.Context, archive *os.File, rootfs string, o UnpackOptions) error {
	fi, err := archive.Stat()
	if err != nil {
		return fmt.Errorf("unpack rootfs: %w", err)
	}
	size := fi.Size()
	xo := xzpar.Options{Workers: o.Workers, MemoryBudget: o.MemoryBudget}
	if o.Progress != nil {
		xo.Progress = func(n int64) { o.Progress(n, size) }
	}
	dec, err := xzpar.NewReader(archive, size, xo)
	if err != nil {
		return fmt.Errorf("unpack rootfs: %w", xzError(err))
	}
	err = extractAndDrain(ctx, dec, rootfs, o)
	dec.Close()
	if err == nil && o.Progress != nil {
		o.Progress(size, size) // the index and footer are never "handed out"
	}
	return err
}

// UnpackReader unpacks the xz-compressed tarball read from r into the
// existing directory rootfs, decoding in goroutines of their own so that
// reading, decoding and writing overlap. It is Unpack for a stream, such as
// a download, that cannot be read at random.
func UnpackReader(ctx context.Context, r io.Reader, rootfs string, o UnpackOptions) error {
	xo := xzpar.Options{Workers: o.Workers, MemoryBudget: o.MemoryBudget}
	if o.Progress != nil {
		xo.Progress = func(n int64) { o.Progress(n, -1) }
	}
	// Blocks whose headers give their sizes (xz --threads writes them)
	// are decoded in parallel as soon as they have arrived; a download
	// being unpacked as it comes in gains the most from that.
	in := &byteCounter{r: r}
	dec, err := xzpar.NewStreamReader(in, xo)
	if err != nil {
		return fmt.Errorf("unpack rootfs: %w", xzError(err))
	}
	err = extractAndDrain(ctx, dec, rootfs, o)
	dec.Close()
	if err == nil && o.Progress != nil {
		// The index and footer are never "handed out".
		o.Progress(in.n.Load(), -1)
	}
	return err
}

// byteCounter counts what is read through it.
type byteCounter struct {
	r io.Reader
	n atomic.Int64
}

func (c *byteCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// extractAndDrain extracts the tar stream dec and then reads what follows
// the end of the archive, so the xz checks of the last block and the
// stream's index are verified: a truncated file fails even when the tar
// part happens to end before the cut.
func extractAndDrain(ctx context.Context, dec io.Reader, rootfs string, o UnpackOptions) error {
	if err := Extract(ctx, dec, rootfs, o); err != nil {
		return err
	}
	// Tar pads to records of 10 KiB; more than this is not ours to check.
	if _, err := io.Copy(io.Discard, io.LimitReader(dec, 16<<20)); err != nil {
		return fmt.Errorf("unpack rootfs: after the end of the archive: %w", xzError(err))
	}
	return nil
}

// xzError makes sure a decoding error says it comes from xz: the library's
// own errors do, but plain I/O errors such as io.ErrUnexpectedEOF do not.
func xzError(err error) error {
	if err == nil || strings.HasPrefix(err.Error(), "xz") {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("xz: truncated file: %w", err)
	}
	return fmt.Errorf("xz: %w", err)
}
