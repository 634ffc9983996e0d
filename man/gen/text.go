package main

// The prose of the man page around what comes from the definitions, in
// troff. Each string ends with a newline and has no empty line.

const nameAndSynopsis = `.SH NAME
lxc-download \- download, verify, cache and unpack LXC container images
.SH SYNOPSIS
.B lxc-create
.B \-t download
.B \-n
.I NAME
.B \-\-
.B \-d
.I DIST
.B \-r
.I RELEASE
.RB [ \-a
.IR ARCH ]
.RI [ OPTIONS ]
.br
.B lxc-create
.B \-t local
.B \-n
.I NAME
.B \-\-
.B \-f
.I ROOTFS-TARBALL
.RB [ \-m
.IR META-TARBALL ]
.RB [ \-\-no\-dev ]
.br
.B lxc-download
.BR \-l | \-\-list
.RI [ OPTIONS ]
.br
.B lxc-download
.B \-\-rootfs
.I DIR
.B \-d
.I DIST
.B \-r
.I RELEASE
.RI [ OPTIONS ]
`

const description = `.SH DESCRIPTION
.B lxc-download
stands in for LXC's
.B download
template. It reads the image server's index, picks the image for the
distribution, release, architecture and variant asked for, downloads its
.I rootfs.tar.xz
and
.I meta.tar.xz
over HTTPS, verifies their OpenPGP signatures and SHA256 checksums, keeps
them in a local cache, unpacks the root filesystem into the container and
writes the container's configuration from the image's metadata.
It is one static binary: it needs no wget, tar, xz, gpg, getopt or sed on
the host.
.PP
.B lxc-create
runs it with
.BR \-\-path ,
.BR \-\-name ,
.B \-\-rootfs
(and, for unprivileged containers,
.BR \-\-mapped\-uid " and " \-\-mapped\-gid );
everything after
.B \-\-
on the lxc-create command line is passed on.
.SS Template run and commands
Without a command,
.B lxc-download
is the template, with the shell template's options, messages, exit
status and listing layout. A command
.RB ( list ,
.BR cache ,
.BR local ,
.BR mirror ,
.BR version ,
.BR help )
is recognised only as the first argument, and a template run takes no
arguments other than options: lxc-create passes options only, so its
arguments never name a command, and a word elsewhere on a template run's
command line (such as
.BR "\-\-name c1 list" )
is an error, not a command.
.SS The local template
The binary is also LXC's other image template,
.BR lxc-local ,
which makes a container from an image's tarballs at hand instead of a
server's:
.B lxc-download local
(see
.BR COMMANDS ),
or the binary called
.B lxc-local
(a link or a copy of that name).
.B make install
puts a shim in place of LXC's
.B lxc-local
that runs
.BR "lxc-download local" ,
so that
.B lxc-create \-t local
runs it. The rootfs tarball
.RB ( \-f )
is unpacked and the meta tarball
.RB ( \-m )
applied as the download template applies an image's (excludes, templates,
fstab, create-message; the expiry is ignored), with LXC 5.0's config
layout: config, fstab and rootfs are byte for byte those of Debian 12's
shell
.BR lxc-local .
Either tarball may be compressed with xz, gzip or zstd, or not at all,
whatever it is called. Without
.BR \-m ,
lxc-create's config only gains
.BR lxc.uts.name ,
as LXC 6.0's
.B lxc-local
does.
.B \-\-no\-dev
leaves out everything below
.I dev/
in the rootfs tarball (upstream advertises it, but its getopt takes the
next argument as its value). The tarballs are the user's own files, so
nothing is verified; the rootfs is still unpacked into a private stage with
every rule of the download template (nothing outside the rootfs is
written, limits hold, a rootfs that is not empty is refused untouched).
.SS Option forms
Options are read as the shell template's GNU getopt read them:
.BI \-\-dist= debian\fR,
.BI "\-\-dist " debian\fR,
.BI "\-d " debian
and
.BI \-d debian\fR;
switches combine
.RB ( \-lq );
a long option may be shortened to any prefix that names only one option
.RB ( "\-\-dis debian" ),
and a prefix of several is an error that names them;
.B \-\-
ends the options; options come in any order, and a repeated option keeps
its last value. As the standard flag package read them before, a single
dash before a whole long name
.RB ( "\-dist debian" )
and
.BI \-a= amd64
are read as one would expect.
`

const commandsIntro = `.SH COMMANDS
Each command takes
.BR \-h " and " \-\-help ,
and its options in the same forms as the template run. The commands that
print a report take
.B \-\-format json
for scripts.
`

// optionDetails is what the page says about each option of the template
// run beyond its --help text, by long name; every option has an entry.
var optionDetails = map[string]string{
	"help": "",
	"list": `Only the images that whichever of
.BR \-d ", " \-r ", " \-a ", " \-\-variant
are given choose are listed.
`,
	"format": `.B text
prints the shell template's columns
DIST, RELEASE, ARCH, VARIANT, BUILD between
.B \-\-\-
lines;
.B json
prints an array of objects with the keys dist, release, arch, variant,
build and path.
`,
	"version": `Prints the version, the source revision, the Go version, the fingerprint of
the built-in key and the compat level, as the
.B version
command does.
`,
	"dist": "As the index names it.\n",
	"release": `A release the index does not have is looked up among the aliases of the
server's simplestreams
.RB ( "\-r 12"
for bookworm), and the release chosen is printed; it must be one the
signed index has.
`,
	"arch": `In the image server's naming (amd64, arm64, armhf, armel, i386, ppc64el,
s390x, riscv64, ...). When
.B \-d
and
.B \-r
are given without
.BR \-a ,
this host's architecture is used and printed.
When any of the three is still missing and standard input is a terminal,
the list is printed and they are asked for; otherwise that is an error.
`,
	"variant": "",
	"build": `The build id, as
.B lxc-download list \-\-all\-builds
shows them; the server must publish simplestreams, which name the builds
it retains. The build's own directory is verified as any image is, by its
signed SHA256SUMS (or its files' signatures), and the rootfs must also be
the file the simplestreams describe (same sha256, no larger). Unsigned
simplestreams are not trusted to say where a build is: it must be in the
directory beside the one the signed index names. A pinned build is a
deliberate downgrade, allowed by the freshness rules, and lowers nothing
remembered. It is not kept in the cache: the cached copy of the image is
used only when it holds exactly this build. Without this option the build
is the one the index names, as the shell template chose it.
`,
	"server": `HOST[:PORT][/PREFIX] is spoken to over HTTPS; http:// asks for plain
HTTP (signatures still hold). file:///PATH reads a mirror tree in the
server's layout (what
.B lxc\-download mirror
writes, or a copy of it) straight from this host's filesystem, a USB stick
or an NFS share: no web server is needed, and everything is verified as
from a server. Symbolic links in the tree are followed only while they
stay in it; only regular files are read.
Given several times, the servers are tried in that order for the index: one
that cannot be reached, answers with what cannot be used or does not verify
moves the run to the next, with a warning, and the image comes from the
first that serves the index. The freshness rules hold across them all.
`,
	"keyid": `It must have signed the index too. Give the full fingerprint; a short id
that matches more than one key is refused.
`,
	"keyserver": `A fetched key is accepted only if its fingerprint is the one asked for.
`,
	"keyring": `Instead of the built-in key, for private image servers and offline use.
`,
	"no-validate": "Signatures and checksums are not verified. Warns once.\n",
	"ca-cert": `Without it the system's store is used (SSL_CERT_FILE, SSL_CERT_DIR, the
usual files and directories, Android's /system/etc/security/cacerts); on a
host that has none, a built-in set of public roots. Certificates are
always verified.
`,
	"nameserver": `For hosts without /etc/resolv.conf (Android); the Android properties are
read with getprop.
`,
	"4": `Only IPv4 addresses are asked of DNS and connected to. Without
.B \-4
or
.BR \-6 ,
the addresses of a name are tried as RFC 8305 (happy eyeballs) says: the
family the resolver prefers first, the other a quarter of a second later
(or as soon as the first fails), side by side; the first connection made
is used. When none can be made, the error names each address and what
failed there.
`,
	"6": "Only IPv6 addresses are asked of DNS and connected to (see \\-4).\n",
	"flush-cache": `The cached copy of this image is deleted first. Without a container, use
.BR "cache flush" .
`,
	"force-cache": "The server is not asked.\n",
	"verbose":     "Each URL is printed as it is fetched.\n",
	"quiet":       "",
	"allow-downgrade": `This host remembers, for each image and server, the newest build and the
newest index signature it has seen; an index signed earlier, or one offering
an older build, is refused as a replay or a stale mirror unless this is
given. A downgrade allowed once does not lower what is remembered.
`,
	"max-index-age": `An index whose signature is older than this is refused: a server or mirror
frozen in the past would hold back security fixes. A clock that is behind
the signature (no battery-backed clock) does no harm.
`,
	"wait": `Runs for the same image take turns; a run that waits says so after two
seconds, naming the process it waits for, and gives up after this long.
`,
	"max-rootfs-size": `Whatever the server or a mirror sends, no more is downloaded: a larger
announced size is refused before reading, a longer body is cut off (a mirror
is then replaced by the main server).
`,
	"max-meta-size": "As \\-\\-max\\-rootfs\\-size, for the meta tarball.\n",
	"index-ttl": `A listing
.RB ( \-\-list ,
.BR list )
keeps the index and simplestreams it read in the cache, with their ETag
and Last-Modified: within this time it lists from them without asking the
server; after it, it asks the server on condition that they changed; and
when the server cannot be reached, it lists from them with a warning giving
their age. They are verified again every time.
`,
	"exact-build": `The index sometimes names a build whose files the server (or every mirror)
does not have yet, or no longer. A run then uses the newest older build the
server still retains (from its simplestreams) that verifies, and no older
than the build this host has cached, with a warning naming both; this
refuses that, and the run fails.
`,
	"memory-budget": `All xz blocks decoded at once, and the windows of those too large to
decode whole, share it; a file that cannot be decoded within it is refused
before anything is decoded, as xz refuses a file over its memory limit.
`,
	"keep-free": `A download stops before the free space of its filesystem falls below
this, and its partial file is removed.
`,
	"cache-unpacked": `After a verified unpack, the cache keeps the image's files too, with a
manifest of every entry (type, mode, owner, extended attributes, times,
size and SHA256) that the entry's record ties to the image's signed sums;
later containers are cloned from that copy rather than decoded from the
tarball: each file by reflink where the filesystem has them, else copied,
and its content checked against the manifest as it is cloned unless the
file in the copy is, to its inode and change time, the one recorded when
the copy was made (\fBcache verify\fR checks them all). A copy that
fails a check, or a cache on another filesystem than the rootfs, is
warned about and the tarball is unpacked instead. Only root keeps and uses
copies, and only for system containers.
.BR "lxc-download cache list"
shows their disk use;
.B "cache prune \-\-unpacked"
removes them.
`,
	"name": "Set by lxc-create.\n",
	"path": `The directory holding the container's
.IR config ;
set by lxc-create.
`,
	"rootfs": `Set by lxc-create. Given alone, without
.B \-\-name
and
.BR \-\-path ,
the image is unpacked into the directory (created if needed) and no LXC
configuration is written: for chroot and proot users and scripts.
`,
	"mapped-uid": `The container's mapped root uid, set by lxc-create for unprivileged
containers; \-1 means none. The cache and the container's config and fstab
are handed to it.
`,
	"mapped-gid": "The same for the group.\n",
}

// environmentDetails is what the page says about each variable beyond its
// --help text; every variable --help lists has an entry.
var environmentDetails = map[string]string{
	"LXC_CACHE_PATH": `The layout is the shell template's, so either can use a cache made by the
other.
`,
	"DOWNLOAD_KEYSERVER":  "",
	"DOWNLOAD_NAMESERVER": "",
	"LXC_DOWNLOAD_IDLE_TIMEOUT": `The attempt is then given up and retried, resuming where it stopped; a
duration such as 30s or 2m.
`,
	"LXC_TEMPLATE_CONFIG, LXC_HOOK_DIR": `Substituted for the words LXC_TEMPLATE_CONFIG and LXC_HOOK_DIR in the
image's configuration. Default: LXC's directories beside the templates
folder the program is installed in, else the build-time defaults
/usr/share/lxc/config and /usr/share/lxc/hooks.
`,
	"http_proxy, https_proxy, no_proxy": "In lower or upper case.\n",
	"SSL_CERT_FILE, SSL_CERT_DIR":       "",
}

const trailer = `.SH FILES
.TP
.I LXC_CACHE_PATH/download/DIST/RELEASE/ARCH/VARIANT/
The cached image: rootfs.tar.xz, the unpacked meta files and build_id.
A cached copy is used until the image's own expiry, and never longer than
30 days after it was fetched.
.TP
.I DEST/.lxc-download-mirror/
What
.B mirror
keeps for DEST: its record of the builds it published, its lock, and
partial downloads for the next run to resume. Mode 0700; the web server
serving DEST must not serve it (refuse paths that start with a dot).
.SH EXIT STATUS
0 on success. On failure, after one line
.B ERROR: ...
on standard error (nothing already cached is lost), the status says what
kind of failure it was:
.TP
.B 1
bad arguments, or a failure of no class below (lxc-create and the shell
template know only zero and not);
.TP
.B 2
no image in the index has the distribution, release, architecture and
variant asked for;
.TP
.B 3
the index names the image, or the build asked for, but the server no longer
has its files;
.TP
.B 4
the server could not be reached (the message says whether by DNS, connect or
TLS), or answered with what cannot be used;
.TP
.B 5
a signature or checksum did not verify, or what was offered was older than
allowed: nothing of it was used;
.TP
.B 6
a problem of this host: disk space, permissions, a rootfs that is not empty,
memory for decoding.
.SH EXAMPLES
.nf
lxc-create -t download -n c1 -- -d debian -r bookworm -a amd64
lxc-download --list -d alpine
lxc-download list --format json
lxc-download list debian/12 --all-builds
lxc-create -t download -n c2 -- -d debian -r 12 --build 20261120_05:24
lxc-download --rootfs /srv/chroot/bookworm -d debian -r bookworm
lxc-create -t local -n c2 -- -m meta.tar.xz -f rootfs.tar.zst
lxc-download cache list
lxc-download cache prune --older-than 14d
lxc-download mirror -d debian -d ubuntu -a amd64 --keep 2 --prune /srv/images
.fi
.SH SEE ALSO
.BR lxc-create (1),
.BR lxc.container.conf (5)
`

// bashCompletion asks the program for the words that may come next, by
// urfave/cli's protocol: the words so far, the one being completed, then
// --generate-bash-completion. When it has none (a value, a file), bash
// completes file names.
const bashCompletion = `# bash completion for lxc-download.
# Generated by man/gen; do not edit.
_lxc_download() {
    local IFS=$'\n' cur="${COMP_WORDS[COMP_CWORD]}"
    COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" "${COMP_WORDS[@]:1:COMP_CWORD}" --generate-bash-completion 2>/dev/null)" -- "$cur"))
}
complete -o bashdefault -o default -F _lxc_download lxc-download
`

// zshCompletion does the same for zsh (an autoloaded completion function).
const zshCompletion = `#compdef lxc-download
# zsh completion for lxc-download.
# Generated by man/gen; do not edit.
local -a candidates
candidates=("${(@f)$("${words[1]}" "${(@)words[2,CURRENT]}" --generate-bash-completion 2>/dev/null)}")
candidates=(${candidates:#})
if (( ${#candidates} )); then
  compadd -a candidates
else
  _files
fi
`
