// Package fetchtest provides an in-process image server for tests and the
// demo, in the spirit of net/http/httptest: it builds real image trees
// (rootfs and meta tarballs compressed with xz, index files with their
// compatibility-level variants, OpenPGP signatures and SHA256SUMS) and serves
// them over HTTPS (and plain HTTP) on the loopback interface, so that every
// test runs offline. Faults can be injected per path to exercise retries,
// resumption, timeouts, mirrors and verification.
package fetchtest

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Compat is the compatibility level of the index and meta variants the
// server publishes next to the plain files (index-system.7 and so on).
const Compat = 7

// File is one entry of a rootfs tarball.
type File struct {
	Name     string // as written in the tarball, e.g. "./etc/hostname"
	Type     byte   // an archive/tar type flag; 0 means a regular file
	Mode     int64  // permission bits, setuid, setgid and sticky included
	Uid, Gid int
	Linkname string // target of a symbolic or hard link
	Devmajor int64
	Devminor int64
	Body     string            // contents of a regular file
	Xattrs   map[string]string // extended attributes, e.g. "user.comment"
	ModTime  time.Time         // zero means DefaultModTime
}

// Image is one image of the server: where it sits in the index, its meta
// files and its rootfs.
type Image struct {
	Dist, Release, Arch, Variant, Build string
	// Meta holds the files of meta.tar.xz by name: config, config-user,
	// fstab, create-message, expiry, templates, excludes-user...
	Meta   map[string]string
	Rootfs []File
	// BlockSize, when positive, makes rootfs.tar.xz a multi-block xz file
	// with independent blocks of this many uncompressed bytes, as
	// `xz --threads=0` writes them. Zero gives a single block.
	BlockSize int
}

// DefaultModTime is the modification time of files whose ModTime is zero,
// so that tarballs are reproducible.
var DefaultModTime = time.Date(2026, 11, 20, 5, 24, 0, 0, time.UTC)

// PingCapability is the security.capability value of usr/bin/ping in
// DefaultImage: a VFS_CAP_REVISION_2 blob granting cap_net_raw, effective
// and permitted (what `setcap cap_net_raw+ep` writes).
var PingCapability = func() string {
	const capNetRaw = 13
	var b [20]byte
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|0x000001) // revision 2, effective
	binary.LittleEndian.PutUint32(b[4:], 1<<capNetRaw)        // permitted, low word
	return string(b[:])
}()

// kernelArch maps the index's architecture names to the ones LXC's
// lxc.arch takes, as the image builders write them in config.
var kernelArch = map[string]string{
	"amd64": "x86_64", "arm64": "aarch64", "armhf": "armv7l", "armel": "armv5tel",
	"i386": "i686", "ppc64el": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
}

// DefaultImage is debian/bookworm/amd64/default, build 20261120_05:24: a
// small rootfs holding every kind of entry an unpacker must restore.
func DefaultImage() Image {
	return NewImage("debian", "bookworm", "amd64", "default", "20261120_05:24")
}

// NewImage is an image with DefaultRootfs and the meta files the image
// builders write for dist, release and arch: config and config-user
// including LXC's common configuration for dist, fstab, a create-message, an
// expiry 14 days from now, templates (/etc/hostname, /etc/hosts) and
// excludes-user (the rootfs's device nodes).
func NewImage(dist, release, arch, variant, build string) Image {
	rootfs := DefaultRootfs()
	karch := kernelArch[arch]
	if karch == "" {
		karch = arch
	}
	title := strings.ToUpper(dist[:1]) + dist[1:]
	var excludes strings.Builder
	for _, f := range rootfs {
		if f.Type == tar.TypeChar || f.Type == tar.TypeBlock {
			excludes.WriteString(f.Name + "\n")
		}
	}
	return Image{
		Dist: dist, Release: release, Arch: arch, Variant: variant, Build: build,
		Meta: map[string]string{
			"config": fmt.Sprintf("lxc.include = LXC_TEMPLATE_CONFIG/%s.common.conf\nlxc.arch = %s\n", dist, karch),
			"config-user": fmt.Sprintf("lxc.include = LXC_TEMPLATE_CONFIG/%s.common.conf\n"+
				"lxc.include = LXC_TEMPLATE_CONFIG/%s.userns.conf\nlxc.arch = %s\n", dist, dist, karch),
			"fstab": "none dev/shm tmpfs defaults,size=65536k 0 0\n",
			"create-message": fmt.Sprintf("You just created a %s %s %s (%s) container.\n\n"+
				"To enable SSH, run: apt install openssh-server\n"+
				"No default root or user password are set by LXC.\n", title, release, arch, build),
			"expiry":        fmt.Sprint(time.Now().Add(14 * 24 * time.Hour).Unix()),
			"templates":     "/etc/hostname\n/etc/hosts\n",
			"excludes-user": excludes.String(),
		},
		Rootfs: rootfs,
	}
}

// DefaultRootfs is the rootfs of DefaultImage, in the order and with the
// names GNU tar gives them in the image builders' tarballs ("./etc/",
// "./etc/hostname"): directories with unusual modes (tmp 1777, a setgid
// directory, a 0700 home owned by a user), regular files, setuid and setgid
// binaries, relative, absolute and dangling symbolic links, a hard link, a
// fifo, character and block devices, files owned by non-root users and
// groups, and extended attributes in the user and security namespaces
// (security.capability with a real capability on usr/bin/ping).
func DefaultRootfs() []File {
	dir := func(name string, mode int64, uid, gid int) File {
		return File{Name: name, Type: tar.TypeDir, Mode: mode, Uid: uid, Gid: gid}
	}
	reg := func(name string, mode int64, body string) File {
		return File{Name: name, Type: tar.TypeReg, Mode: mode, Body: body}
	}
	link := func(name, target string) File {
		return File{Name: name, Type: tar.TypeSymlink, Mode: 0o777, Linkname: target}
	}
	dev := func(name string, typ byte, mode int64, gid int, major, minor int64) File {
		return File{Name: name, Type: typ, Mode: mode, Gid: gid, Devmajor: major, Devminor: minor}
	}
	files := []File{
		dir("./", 0o755, 0, 0),
		link("./bin", "usr/bin"),
		dir("./dev/", 0o755, 0, 0),
		dev("./dev/console", tar.TypeChar, 0o600, 5, 5, 1),
		dev("./dev/full", tar.TypeChar, 0o666, 0, 1, 7),
		dev("./dev/loop0", tar.TypeBlock, 0o660, 6, 7, 0),
		dev("./dev/null", tar.TypeChar, 0o666, 0, 1, 3),
		dev("./dev/random", tar.TypeChar, 0o666, 0, 1, 8),
		dev("./dev/tty", tar.TypeChar, 0o666, 5, 5, 0),
		dev("./dev/urandom", tar.TypeChar, 0o666, 0, 1, 9),
		dev("./dev/zero", tar.TypeChar, 0o666, 0, 1, 5),
		dir("./etc/", 0o755, 0, 0),
		reg("./etc/debian_version", 0o644, "12.8\n"),
		reg("./etc/group", 0o644, "root:x:0:\nadm:x:4:\ntty:x:5:\ndisk:x:6:\nmail:x:8:\nshadow:x:42:\ncrontab:x:101:\nuser:x:1000:\n"),
		reg("./etc/gshadow", 0o640, "root:*::\nmail:*::\ncrontab:!::\nuser:!::\n"),
		reg("./etc/hostname", 0o644, "LXC_NAME\n"),
		reg("./etc/hosts", 0o644, "127.0.0.1\tlocalhost\n127.0.1.1\tLXC_NAME\n\n"+
			"::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"),
		link("./etc/localtime", "/usr/share/zoneinfo/Etc/UTC"),
		{Name: "./etc/motd", Type: tar.TypeReg, Mode: 0o644, Body: "Debian GNU/Linux comes with ABSOLUTELY NO WARRANTY.\n",
			Xattrs: map[string]string{"user.comment": "message of the day", "user.origin": "base-files"}},
		link("./etc/mtab", "../proc/self/mounts"),
		reg("./etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000:user:/home/user:/bin/bash\n"),
		link("./etc/resolv.conf", "../run/systemd/resolve/stub-resolv.conf"),
		{Name: "./etc/shadow", Type: tar.TypeReg, Mode: 0o640, Gid: 42, Body: "root:*:20000:0:99999:7:::\nuser:!:20000:0:99999:7:::\n"},
		dir("./home/", 0o755, 0, 0),
		dir("./home/user/", 0o700, 1000, 1000),
		{Name: "./home/user/.bashrc", Type: tar.TypeReg, Mode: 0o644, Uid: 1000, Gid: 1000, Body: "# ~/.bashrc\nexport PS1='\\u@\\h:\\w\\$ '\n"},
		link("./lib", "usr/lib"),
		link("./lib64", "usr/lib64"),
		dir("./proc/", 0o555, 0, 0),
		dir("./root/", 0o700, 0, 0),
		dir("./run/", 0o755, 0, 0),
		{Name: "./run/initctl", Type: tar.TypeFifo, Mode: 0o600},
		link("./sbin", "usr/sbin"),
		dir("./sys/", 0o555, 0, 0),
		dir("./tmp/", 0o1777, 0, 0),
		dir("./usr/", 0o755, 0, 0),
		dir("./usr/bin/", 0o755, 0, 0),
		{Name: "./usr/bin/crontab", Type: tar.TypeReg, Mode: 0o2755, Gid: 101, Body: "#!/bin/sh\necho crontab\n"},
		reg("./usr/bin/passwd", 0o4755, "\x7fELF passwd (not a real binary)\n"),
		reg("./usr/bin/perl", 0o755, "#!/bin/false\n# perl stand-in\n"),
		{Name: "./usr/bin/perl5.36.0", Type: tar.TypeLink, Linkname: "./usr/bin/perl"},
		{Name: "./usr/bin/ping", Type: tar.TypeReg, Mode: 0o755, Body: "\x7fELF ping (not a real binary)\n",
			Xattrs: map[string]string{"security.capability": PingCapability}},
		dir("./usr/lib/", 0o755, 0, 0),
		reg("./usr/lib/os-release", 0o644, "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nID=debian\n"),
		dir("./usr/lib64/", 0o755, 0, 0),
		dir("./usr/sbin/", 0o755, 0, 0),
		dir("./usr/share/", 0o755, 0, 0),
		dir("./usr/share/zoneinfo/", 0o755, 0, 0),
		dir("./usr/share/zoneinfo/Etc/", 0o755, 0, 0),
		reg("./usr/share/zoneinfo/Etc/UTC", 0o644, "TZif2\x00\x00\x00UTC\n"),
		dir("./var/", 0o755, 0, 0),
		dir("./var/log/", 0o755, 0, 0),
		{Name: "./var/log/empty.log", Type: tar.TypeReg, Mode: 0o640, Uid: 0, Gid: 4},
		dir("./var/mail/", 0o2775, 0, 8),
		dir("./var/spool/", 0o755, 0, 0),
		dir("./var/spool/cron/", 0o755, 0, 0),
		{Name: "./var/spool/cron/crontabs/", Type: tar.TypeDir, Mode: 0o1730, Gid: 101,
			Xattrs: map[string]string{"user.note": "per-user crontabs"}},
	}
	return files
}

// Tarball writes files as an uncompressed tar in the given order, the way
// `tar --xattrs` does: PAX headers where needed, extended attributes as
// SCHILY.xattr.NAME records, numeric owners only.
func Tarball(files []File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{
			Name:     f.Name,
			Typeflag: f.Type,
			Mode:     f.Mode,
			Uid:      f.Uid,
			Gid:      f.Gid,
			Linkname: f.Linkname,
			Devmajor: f.Devmajor,
			Devminor: f.Devminor,
			ModTime:  f.ModTime,
		}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.ModTime.IsZero() {
			h.ModTime = DefaultModTime
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(f.Body))
		}
		if len(f.Xattrs) > 0 {
			h.PAXRecords = map[string]string{}
			keys := make([]string, 0, len(f.Xattrs))
			for k := range f.Xattrs {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				h.PAXRecords["SCHILY.xattr."+k] = f.Xattrs[k]
			}
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar header: %s: %w", f.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(f.Body)); err != nil {
				return nil, fmt.Errorf("tar body: %s: %w", f.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tar close: %w", err)
	}
	return buf.Bytes(), nil
}

// MetaTarball is meta.tar.xz as the server publishes it: the meta files as
// plain 0644 root-owned entries at the root of the tarball (no "./"
// prefix, as the image builders pack them), sorted by name, compressed
// with XZ.
func MetaTarball(meta map[string]string) ([]byte, error) {
	names := make([]string, 0, len(meta))
	for name := range meta {
		names = append(names, name)
	}
	sort.Strings(names)
	files := make([]File, 0, len(names))
	for _, name := range names {
		files = append(files, File{Name: name, Type: tar.TypeReg, Mode: 0o644, Body: meta[name]})
	}
	t, err := Tarball(files)
	if err != nil {
		return nil, err
	}
	return XZ(t, 0)
}

// RootfsTarball is rootfs.tar.xz of img: Tarball of its Rootfs compressed
// with XZ in blocks of img.BlockSize.
func RootfsTarball(img Image) ([]byte, error) {
	t, err := Tarball(img.Rootfs)
	if err != nil {
		return nil, err
	}
	return XZ(t, img.BlockSize)
}
