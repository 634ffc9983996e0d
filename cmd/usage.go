package cmd

// usageText is what --help prints. It keeps the shell template's layout
// (people and scripts know it) and adds this program's own options; the man
// page man/lxc-download.1 documents the same options and a test keeps the
// two in step.
const usageText = `LXC container image downloader

Special arguments:
[ -h | --help ]: Print this help message and exit
[ -l | --list ]: List all available images and exit
[ --format <text|json> ]: Output format of --list (default: "text")

Required arguments:
[ -d | --dist <distribution> ]: The name of the distribution
[ -r | --release <release> ]: Release name/version
[ -a | --arch <architecture> ]: Architecture of the container
                                (default with -d and -r: this host's)

Optional arguments:
[ --variant <variant> ]: Variant of the image (default: "default")
[ --server <server> ]: Image server (default: "images.linuxcontainers.org")
[ --keyid <keyid> ]: Fingerprint of the key that must have signed the images
                     (default: the image server's built-in key)
[ --keyserver <keyserver> ]: Keyserver to fetch --keyid from (hkp://, hkps://
                             or https://). Environment: DOWNLOAD_KEYSERVER
[ --keyring <file> ]: OpenPGP public keys (armored or binary) to trust
[ --no-validate ]: Disable signature validation (not recommended)
[ --ca-cert <file> ]: Certificate authorities (PEM) to trust for HTTPS
                      instead of the system's
[ --nameserver <ip[:port],...> ]: DNS servers to use (default: the system's,
                                  else Android's net.dns1/net.dns2).
                                  Environment: DOWNLOAD_NAMESERVER
[ --flush-cache ]: Flush the local copy (if present)
[ --force-cache ]: Force the use of the local copy even if expired
[ --verbose ]: Print more information about what is happening
[ -q | --quiet ]: Print only errors, warnings and the create message

LXC internal arguments (do not pass manually!):
[ --name <name> ]: The container name
[ --path <path> ]: The path to the container
[ --rootfs <rootfs> ]: The path to the container's rootfs
                       (alone: unpack the image there, write no LXC config)
[ --mapped-uid <map> ]: A uid map (user namespaces)
[ --mapped-gid <map> ]: A gid map (user namespaces)

Environment variables:
LXC_CACHE_PATH: Cache directory (default: /var/cache/lxc, or
                $HOME/.cache/lxc in an unprivileged user namespace)
DOWNLOAD_KEYSERVER: Keyserver, overridden by --keyserver
DOWNLOAD_NAMESERVER: DNS servers, overridden by --nameserver
LXC_DOWNLOAD_IDLE_TIMEOUT: How long a download may receive nothing before
                           it is retried (default: 30s)
LXC_TEMPLATE_CONFIG, LXC_HOOK_DIR: LXC's config and hook directories
http_proxy, https_proxy, no_proxy: Proxies for HTTP and HTTPS
SSL_CERT_FILE, SSL_CERT_DIR: Certificate authorities instead of the system's
`
