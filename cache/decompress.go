package cache

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/klauspost/compress/zstd"

	"github.com/lxc/lxc-download/cache/xzpar"
)

// Compression is how a tarball is compressed, as its first bytes tell.
type Compression string

// The compressions UnpackArchive and Decompress read. GNU tar's extraction
// recognises these by their magic numbers as well, whatever the file is
// called; so do they.
const (
	Uncompressed Compression = "tar"
	XZ           Compression = "xz"
	Gzip         Compression = "gzip"
	Zstd         Compression = "zstd"
)

// MaxZstdWindow is the largest window a zstd frame may ask the decoder to
// keep (128 MiB): what the zstd tool itself decodes without --long=31 or
// --memory, and so what GNU tar, which runs it, can unpack.
const MaxZstdWindow = 128 << 20

// sniffSize is how many bytes DetectCompression needs to see to recognise
// every format: a whole tar header.
const sniffSize = 512

// magic numbers of the formats read, and of some that are not but deserve
// a clearer error than "not a tarball".
var (
	xzMagic   = []byte{0xfd, '7', 'z', 'X', 'Z', 0}
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
	unread    = []struct {
		name  string
		magic []byte
	}{
		{"bzip2", []byte("BZh")},
		{"lzip", []byte("LZIP")},
		{"lzop", []byte{0x89, 'L', 'Z', 'O'}},
		{"compress (.Z)", []byte{0x1f, 0x9d}},
	}
)

// DetectCompression tells the compression of a tarball from its first
// bytes (head: at least 512 of them, or the whole file when it is
// shorter). An uncompressed tar is recognised by the "ustar" magic of
// POSIX and GNU headers, or, for old V7 headers, by a valid header
// checksum. Anything else is an error saying what it is, when known.
func DetectCompression(head []byte) (Compression, error) {
	switch {
	case bytes.HasPrefix(head, xzMagic):
		return XZ, nil
	case bytes.HasPrefix(head, gzipMagic):
		return Gzip, nil
	case bytes.HasPrefix(head, zstdMagic):
		return Zstd, nil
	case isTarHeader(head):
		return Uncompressed, nil
	}
	for _, u := range unread {
		if bytes.HasPrefix(head, u.magic) {
			return "", fmt.Errorf("%s-compressed archives are not supported (use xz, gzip, zstd or no compression)", u.name)
		}
	}
	if len(head) == 0 {
		return "", errors.New("not a tarball: the file is empty")
	}
	return "", errors.New("not a tarball: neither xz, gzip nor zstd data nor a tar header")
}

// isTarHeader reports whether head starts with a tar header: the ustar
// magic at offset 257, or a checksum that matches the header's bytes.
func isTarHeader(head []byte) bool {
	if len(head) < sniffSize {
		return false
	}
	if bytes.Equal(head[257:262], []byte("ustar")) {
		return true
	}
	field := bytes.TrimRight(bytes.TrimLeft(head[148:156], " "), " \x00")
	want, err := strconv.ParseUint(string(field), 8, 32)
	if err != nil || len(field) == 0 {
		return false
	}
	// The checksum is the sum of the header's bytes with its own field
	// read as spaces.
	sum := uint64(8 * ' ')
	for i, b := range head[:sniffSize] {
		if i < 148 || i >= 156 {
			sum += uint64(b)
		}
	}
	return sum == want && sum != 8*' '
}

// Decompress returns a reader of the tar stream in r, a tarball compressed
// with any of the Compressions (told apart by DetectCompression), and
// which compression it found. xz is decoded by xzpar (every block's check
// verified, within o.MemoryBudget), gzip by compress/gzip (concatenated members too, each
// member's CRC-32 and size verified), zstd by klauspost/compress (frame
// checksums verified; windows up to MaxZstdWindow). Errors of the
// decoders say which format they come from. The caller must Close the
// reader; that does not close r.
//
// The checks at the end of the data are only made when the reader is read
// to its end: UnpackTar does that.
func Decompress(r io.Reader, o UnpackOptions) (io.ReadCloser, Compression, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(sniffSize)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, "", fmt.Errorf("read archive: %w", err)
	}
	c, err := DetectCompression(head)
	if err != nil {
		return nil, "", err
	}
	switch c {
	case XZ:
		dec, err := xzpar.NewStreamReader(br, xzpar.Options{Workers: o.Workers, MemoryBudget: o.MemoryBudget})
		if err != nil {
			return nil, c, xzError(err)
		}
		return labelled{dec, xzError}, c, nil
	case Gzip:
		dec, err := gzip.NewReader(br)
		if err != nil {
			return nil, c, gzipError(err)
		}
		return labelled{dec, gzipError}, c, nil
	case Zstd:
		dec, err := zstd.NewReader(br,
			zstd.WithDecoderMaxWindow(MaxZstdWindow),
			zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, c, zstdError(err)
		}
		return labelled{zstdCloser{dec}, zstdError}, c, nil
	}
	return io.NopCloser(br), c, nil
}

// labelled passes the errors of a decoder through label, so they say
// which format they come from.
type labelled struct {
	io.ReadCloser
	label func(error) error
}

func (l labelled) Read(p []byte) (int, error) {
	n, err := l.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = l.label(err)
	}
	return n, err
}

// zstdCloser gives a zstd decoder the Close of an io.ReadCloser.
type zstdCloser struct{ *zstd.Decoder }

func (z zstdCloser) Close() error {
	z.Decoder.Close()
	return nil
}

func gzipError(err error) error { return formatError("gzip", err) }
func zstdError(err error) error { return formatError("zstd", err) }

// formatError makes sure a decoding error names its format, and calls a
// cut-off file truncated.
func formatError(format string, err error) error {
	msg := err.Error()
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s: truncated file: %w", format, err)
	}
	if len(msg) >= len(format) && msg[:len(format)] == format {
		return err
	}
	return fmt.Errorf("%s: %w", format, err)
}

// UnpackArchive unpacks the tarball archive, compressed with any of the
// Compressions or not at all, into the existing directory rootfs, with the
// same rules and safety as Unpack: nothing is written outside rootfs, the
// limits of o hold, and the compressed data's checks are all verified. xz
// files go to Unpack (their blocks decoded in parallel); the others are
// decoded as they are read. On error, what was unpacked so far stays in
// rootfs for the caller to remove.
func UnpackArchive(ctx context.Context, archive *os.File, rootfs string, o UnpackOptions) error {
	head := make([]byte, sniffSize)
	n, err := archive.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("unpack rootfs: read archive: %w", err)
	}
	c, err := DetectCompression(head[:n])
	if err != nil {
		return fmt.Errorf("unpack rootfs: %w", err)
	}
	if c == XZ {
		return Unpack(ctx, archive, rootfs, o)
	}
	fi, err := archive.Stat()
	if err != nil {
		return fmt.Errorf("unpack rootfs: %w", err)
	}
	in := io.Reader(io.NewSectionReader(archive, 0, fi.Size()))
	if o.Progress != nil {
		in = &progressReader{r: in, total: fi.Size(), report: o.Progress}
	}
	dec, _, err := Decompress(in, o)
	if err != nil {
		return fmt.Errorf("unpack rootfs: %w", err)
	}
	defer dec.Close()
	return UnpackTar(ctx, dec, rootfs, o)
}

// UnpackArchive unpacks archive, compressed with any of the Compressions
// or not at all, into the stage, as the package's UnpackArchive does,
// keeping the archive's root entry for Install. Like Unpack, it verifies
// nothing but the compressed data's own checks: it is for a file the
// caller trusts as it is, such as the user's own tarball (lxc-local).
func (s *RootfsStage) UnpackArchive(ctx context.Context, archive *os.File, o UnpackOptions) error {
	o = s.prepare(o)
	return UnpackArchive(ctx, archive, s.Dir, o)
}

// UnpackTar unpacks the uncompressed tar stream r into the existing
// directory rootfs (see Extract), then reads what follows the end of the
// archive, so that a decompressing r verifies its checks at the end of the
// data: a corrupted or cut-off file fails even when the tar part happens
// to end before the damage.
//
// When the tar stream is malformed, the rest of r is read too: damage to
// compressed data usually shows first as a tar header that makes no sense,
// and the decoder's own error (a checksum, corrupt data) says what is
// really wrong.
func UnpackTar(ctx context.Context, r io.Reader, rootfs string, o UnpackOptions) error {
	if err := Extract(ctx, r, rootfs, o); err != nil {
		if errors.Is(err, tar.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) {
			if _, derr := io.Copy(io.Discard, r); derr != nil && !errors.Is(derr, io.ErrUnexpectedEOF) {
				return fmt.Errorf("unpack rootfs: %w (the tar stream was damaged: %v)", derr, errors.Unwrap(err))
			}
		}
		return err
	}
	// Tar pads to records of 10 KiB; more than this is not ours to check.
	if _, err := io.Copy(io.Discard, io.LimitReader(r, 16<<20)); err != nil {
		return fmt.Errorf("unpack rootfs: after the end of the archive: %w", err)
	}
	return nil
}

// progressReader reports the bytes read through it to a Progress function.
type progressReader struct {
	r      io.Reader
	done   int64
	total  int64
	report func(done, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.done += int64(n)
		p.report(p.done, p.total)
	}
	return n, err
}
