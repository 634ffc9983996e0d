package compat

// The rules of LXC's other image template, lxc-local, which makes a
// container from a rootfs tarball (-f) and a meta tarball (-m) the user
// has at hand.
//
// With a meta tarball it applies the metadata as the download template
// does, with the same relevant-file rule (Relevant), excludes, fstab,
// templates, mingetty fix and create-message; it ignores expiry. The
// config it writes depends on LXC's version:
//
//   - LXC 5.0 (Debian 12, Ubuntu 24.04) writes exactly what RewriteConfig
//     returns: lxc.mount.fstab and lxc.uts.name close the container
//     block, then comes the network block. Its echo lines are placed
//     differently in the script, but the bytes are the same.
//   - LXC 6.0 and later (upstream f885a3c56) append the network block
//     right after the container block, and lxc.mount.fstab and
//     lxc.uts.name after it, at the very end.
//
// This program writes LXC 5.0's layout, the one lxc-download writes too,
// which the tests compare byte for byte with the installed template. LXC
// reads both the same way: only the order of independent keys differs.
//
// Without a meta tarball (LXC 6.0 and later; 5.0 cannot run without one)
// the config is left as it is but for an lxc.uts.name line at its end:
// see AppendUTSName.

import (
	"fmt"
	"io"
)

// NoDevExclude is the exclude pattern of lxc-local's --no-dev: everything
// below the rootfs's dev directory, which itself stays (LXC adds
// --exclude=./dev/* to its tar command line; the container's /dev/pts is
// made afterwards as usual).
const NoDevExclude = "./dev/*"

// ReadMetaTar reads the files of a meta tarball from its uncompressed tar
// stream r, for meta tarballs that are not xz (lxc-local takes gzip, zstd
// and plain tar as well): the caller decompresses, and r yields the
// decompressor's errors. The rules and limits of ReadMetaTarball apply to
// the tar stream and its files (MaxMetaTar, MaxMetaFiles, MaxMetaFileSize,
// MaxMetaTotal); bounding the compressed data is the decompressor's job.
// r is read to its end, so that a decompressor's final checks are made.
func ReadMetaTar(r io.Reader) (MetaFiles, error) {
	return readMetaEntries(&limitedTar{r: r, left: MaxMetaTar})
}

// limitedTar refuses more than left bytes of r.
type limitedTar struct {
	r    io.Reader
	left int64
}

func (l *limitedTar) Read(p []byte) (int, error) {
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n, fmt.Errorf("more than %d bytes uncompressed", MaxMetaTar)
	}
	return n, err
}

// AppendUTSName returns the config lxc-local writes when it is given no
// meta tarball: current with "lxc.uts.name = NAME\n" appended, as its echo
// >> did (so a last line without a newline has it joined to it). Without
// metadata nothing is substituted in it.
func AppendUTSName(current []byte, name string) []byte {
	out := make([]byte, 0, len(current)+len(name)+16)
	out = append(out, current...)
	out = append(out, "lxc.uts.name = "...)
	out = append(out, name...)
	return append(out, '\n')
}
