// Package fetch gets images from an image server (images.linuxcontainers.org
// or one like it) and proves they are genuine.
//
// A Client downloads the index and the two files of an image, meta.tar.xz
// and rootfs.tar.xz, over HTTPS. With Options.Validate every file must be
// signed by a key of the keyring: the index by its detached signature
// (index-MODE.7.asc, else index-MODE.asc), each image file by its own
// detached signature and/or the signed SHA256SUMS of the image directory,
// whichever the server publishes; where both exist both must hold. Hashes
// and signatures are computed while the bytes arrive, and a file is renamed
// to its final name only once it is verified, so nothing unverified is ever
// left where a caller would use it.
//
// The transfer is built for poor links: every request is tried several
// times with backoff, a stalled connection is abandoned after an idle
// timeout, and an interrupted download continues with an HTTP Range request
// from where it stopped, in the same run or, from the NAME.partial file
// and its NAME.partial.info sidecar left in the download directory, in the
// next one. If-Range with the validators of the first response makes a
// changed file come whole.
//
// The image server may redirect big files to mirrors. The index and all
// signatures are taken from the primary server only; artifacts from a
// mirror are verified like any other, and a mirror that fails or serves
// bytes that do not verify is replaced by the primary server (asked with
// "X-LXC-No-GeoIP: on" so that it does not redirect again), with a warning
// naming the mirror. When validating and HTTPS cannot connect at all, plain
// HTTP is tried, with a warning: signatures still protect the content.
//
// HTTPS is always verified: against Options.CACert, else the system's
// roots (SSL_CERT_FILE and SSL_CERT_DIR included), else Android's, else a
// built-in set. Proxies come from http_proxy, https_proxy and no_proxy
// (either case). All connections are set up in one place, newTransport.
// Nothing is written outside the directory a caller gives.
package fetch
