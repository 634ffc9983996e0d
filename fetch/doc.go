// Package fetch gets images from an image server (images.linuxcontainers.org
// or one like it) and proves they are genuine.
//
// A Client downloads the index and the two files of an image, meta.tar.xz
// and rootfs.tar.xz, over HTTPS, or over plain HTTP only when the server
// is given as http:// (see ParseServer: a server may also publish under a
// path prefix, which every request then goes below). With
// Options.Validate every file must be signed by a key of the keyring: the
// index by its detached signature (index-MODE.7.asc, else
// index-MODE.asc), each image file by its own detached signature and/or
// the signed SHA256SUMS of the image directory, whichever the server
// publishes; where both exist both must hold. An index whose signature is
// older than Options.MaxIndexAge is refused, so that a replayed old index
// cannot hold back updates; FetchIndex returns the signature's time for
// the caller to remember. Hashes and signatures are computed while the
// bytes arrive, and a file is renamed to its final name only once it is
// verified, so nothing unverified is ever left where a caller would use
// it.
//
// The transfer is built for poor links: every request is tried several
// times with backoff, a stalled connection is abandoned after an idle
// timeout, and an interrupted download continues with an HTTP Range request
// from where it stopped, in the same run or, from the NAME.partial file
// and its NAME.partial.info sidecar left in the download directory, in the
// next one. If-Range with the validators of the first response makes a
// changed file come whole.
//
// Whatever a server sends, a download is bounded: small files (index,
// sums, signatures) by fixed limits, meta.tar.xz and rootfs.tar.xz by
// Options.MaxMetaSize and MaxRootfsSize (a larger Content-Length is refused
// before the body is read), and the free space of the download directory's
// filesystem by Options.DiskReserve. A file that breaks a limit is deleted.
//
// The image server may redirect big files to mirrors. The index and all
// signatures are taken from the primary server only, with the scheme it
// was given with; artifacts from a mirror are verified like any other, and
// a mirror that fails, breaks a limit or serves bytes that do not verify is
// replaced by the primary server (asked with "X-LXC-No-GeoIP: on" so that
// it does not redirect again), with a warning naming the mirror. Without
// validation a redirect to plain HTTP is never followed. A failure over
// HTTPS is never retried over plain HTTP: that is what an attacker on the
// path would want.
//
// Connections are made as RFC 8305 ("happy eyeballs") says: the addresses
// of a name, resolved here (Options.Nameservers, Android's servers, else
// Go's resolver with resolv.conf and /etc/hosts), are tried the resolver's
// preferred family first and the other a quarter of a second later, side
// by side; Options.IPVersion keeps to one family (-4, -6). A failure to
// connect names every address and what happened there.
//
// A server may also be a mirror tree on this host, file:///PATH (see
// ParseServer): its files are read through os.Root, so that nothing
// outside the tree is ever opened, only regular files are, and they are
// served with the statuses, validators and ranges of a web server, so
// that limits, verification, resuming and fallbacks work unchanged.
//
// Errors keep their texts and carry a class for the caller's exit status
// and fallbacks (Classify, KindOf): server unreachable (and how: DNS,
// connect, TLS, transfer, HTTP 5xx, a missing tree), not found (a
// *RemovedError when the index named the image), verification failed,
// local problem, unusable answer. Listings can be asked for on condition
// (FetchIndexIf, FetchStreamsIf) with the validators of a kept copy, which
// the caller checks again (VerifyIndex, VerifyStreams) before use.
//
// HTTPS is always verified: against Options.CACert, else the system's
// roots (SSL_CERT_FILE and SSL_CERT_DIR included), else Android's, else a
// built-in set; a certificate that does not verify is fatal. Proxies come
// from http_proxy, https_proxy and no_proxy (either case). All connections
// are set up in one place, newTransport. Nothing is written outside the
// directory a caller gives.
package fetch
