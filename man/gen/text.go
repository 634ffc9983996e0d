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
.BR version ,
.BR help )
is recognised only as the first argument, and a template run takes no
arguments other than options: lxc-create passes options only, so its
arguments never name a command, and a word elsewhere on a template run's
command line (such as
.BR "\-\-name c1 list" )
is an error, not a command.
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
	"dist":    "As the index names it.\n",
	"release": "",
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
	"server":  "It is always spoken to over HTTPS.\n",
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
and its content checked against the manifest as it is cloned. A copy that
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
.SH EXIT STATUS
0 on success. 1 on any error, after one line
.B ERROR: ...
on standard error; nothing already cached is lost.
.SH EXAMPLES
.nf
lxc-create -t download -n c1 -- -d debian -r bookworm -a amd64
lxc-download --list -d alpine
lxc-download list --format json
lxc-download --rootfs /srv/chroot/bookworm -d debian -r bookworm
lxc-download cache list
lxc-download cache prune --older-than 14d
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
