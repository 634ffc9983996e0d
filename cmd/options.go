package cmd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/lxc/lxc-download/cache"
	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
)

// Build-time defaults, set with -ldflags "-X github.com/lxc/lxc-download/cmd.NAME=VALUE"
// by packagers whose LXC lives elsewhere. Each is also looked up at run time
// (see lxcDirs) so one binary works on hosts where LXC is installed under
// another prefix.
var (
	// Version is this program's version; it goes into the User-Agent.
	Version = "0.1.0"
	// Commit is the source revision the binary was built from (the
	// Makefile sets it from git); when empty, the revision the go command
	// recorded, if any.
	Commit = ""
	// LocalStateDir is LXC's localstatedir: the system cache is LocalStateDir/cache/lxc.
	LocalStateDir = "/var"
	// TemplateConfig is LXC's LXC_TEMPLATE_CONFIG (the shared configs images include).
	TemplateConfig = "/usr/share/lxc/config"
	// HookDir is LXC's LXC_HOOK_DIR.
	HookDir = "/usr/share/lxc/hooks"
)

// DefaultServer is the image server used when --server is not given.
const DefaultServer = "images.linuxcontainers.org"

// DefaultKeyserver is asked for a --keyid that no local keyring holds.
const DefaultKeyserver = "hkps://keyserver.ubuntu.com"

// Options is everything a run needs to know, as plain values: the command
// line and the environment, already parsed.
type Options struct {
	List   bool   // --list: print the images and exit
	Format string // --format for --list: "text" or "json"

	Dist, Release, Arch, Variant string
	VariantSet                   bool     // --variant given: --list filters by it
	Server                       string   // the server in use: Servers[0] until one fails
	Servers                      []string // --server, each time given, in order; the default alone

	// Build, when not empty, is the retained build to create from
	// (--build) instead of the one the index names.
	Build string

	// The list command's own (with List): the images come from the
	// simplestreams where the server has them, Format is any of
	// compat.ListFormats, Filters are its FILTER words and AllBuilds
	// lists every retained build.
	ListCommand bool
	Filters     []string
	AllBuilds   bool

	Validate  bool   // false with --no-validate
	KeyID     string // --keyid
	Keyserver string // --keyserver, else $DOWNLOAD_KEYSERVER
	Keyring   string // --keyring FILE

	CACert      string   // --ca-cert FILE: trust these CAs for HTTPS
	Nameservers []string // --nameserver, else $DOWNLOAD_NAMESERVER
	IPVersion   int      // 4 with -4, 6 with -6; 0: both, raced

	FlushCache bool
	ForceCache bool
	Verbose    bool
	Quiet      bool

	// Bounds and freshness rules; the zero value of each is the default
	// of the package that applies it.
	AllowDowngrade bool          // accept an index or build older than one seen before
	MaxIndexAge    time.Duration // refuse an index signed longer ago; negative: never
	LockTimeout    time.Duration // give up waiting for another run's lock on the image
	MaxMetaSize    int64         // bytes of meta.tar.xz at most
	MaxRootfsSize  int64         // bytes of rootfs.tar.xz at most
	DiskReserve    int64         // free bytes a download leaves; negative: none
	MemoryBudget   int64         // bytes of decoded xz data in flight at most
	ExactBuild     bool          // never fall back to an older build when the index's is gone
	IndexTTL       time.Duration // a listing reuses what it read this recently; negative: never
	// CacheUnpacked says when the cache keeps (and containers are cloned
	// from) an unpacked copy of the image: --cache-unpacked, else auto.
	CacheUnpacked cache.UnpackedPolicy

	// Set by lxc-create.
	Name, Path, Rootfs   string
	MappedUID, MappedGID int // -1: none

	CachePath string // $LXC_CACHE_PATH
	Home      string // $HOME
}

// The sections of the template run's usage, in the shell template's order:
// each option's urfave/cli Category.
const (
	sectionSpecial  = "Special arguments"
	sectionRequired = "Required arguments"
	sectionOptional = "Optional arguments"
	sectionInternal = "LXC internal arguments (do not pass manually!)"
)

// templateOption is one option of the template run: the urfave/cli flag
// that parses it (its Usage is the text --help prints, broken into lines
// where --help breaks it; its Category the usage section) and the
// placeholder that --help shows in angle brackets, empty for a switch.
type templateOption struct {
	flag cli.Flag
	arg  string
}

// templateOptions are the options of the template run, in --help order.
// They are the one definition that parses the command line, prints --help
// and writes the man page's OPTIONS (man/gen).
var templateOptions = []templateOption{
	{flag: &cli.BoolFlag{Name: "help", Aliases: []string{"h"}, Category: sectionSpecial,
		Usage: "Print this help message and exit"}},
	{flag: &cli.BoolFlag{Name: "list", Aliases: []string{"l"}, Category: sectionSpecial,
		Usage: "List all available images and exit"}},
	{arg: "text|json", flag: &cli.StringFlag{Name: "format", Value: "text", Category: sectionSpecial,
		Usage: "Output format of --list"}},
	// Not in the shell template's usage, which --help keeps as it was.
	{flag: &cli.BoolFlag{Name: "version", Hidden: true, Category: sectionSpecial,
		Usage: "Print the version and exit"}},

	{arg: "distribution", flag: &cli.StringFlag{Name: "dist", Aliases: []string{"d"}, Category: sectionRequired,
		Usage: "The name of the distribution"}},
	{arg: "release", flag: &cli.StringFlag{Name: "release", Aliases: []string{"r"}, Category: sectionRequired,
		Usage: "Release name/version"}},
	{arg: "architecture", flag: &cli.StringFlag{Name: "arch", Aliases: []string{"a"}, Category: sectionRequired,
		Usage: "Architecture of the container\n(default with -d and -r: this host's)"}},

	{arg: "variant", flag: &cli.StringFlag{Name: "variant", Value: "default", Category: sectionOptional,
		Usage: "Variant of the image"}},
	{arg: "build", flag: &cli.StringFlag{Name: "build", Category: sectionOptional,
		Usage: "Create from this build (e.g. 20261120_05:24), one the\nserver retains (default: the newest; see\nlxc-download list --all-builds)"}},
	{arg: "server", flag: &cli.GenericFlag{Name: "server", Value: &serverList{}, DefaultText: `"` + DefaultServer + `"`, Category: sectionOptional,
		Usage: "Image server"}},
	{arg: "keyid", flag: &cli.StringFlag{Name: "keyid", Category: sectionOptional,
		Usage: "Fingerprint of the key that must have signed the images\n(default: the image server's built-in key)"}},
	{arg: "keyserver", flag: &cli.StringFlag{Name: "keyserver", Category: sectionOptional,
		Usage: "Keyserver to fetch --keyid from (hkp://, hkps://\nor https://). Environment: DOWNLOAD_KEYSERVER"}},
	{arg: "file", flag: &cli.StringFlag{Name: "keyring", TakesFile: true, Category: sectionOptional,
		Usage: "OpenPGP public keys (armored or binary) to trust"}},
	{flag: &cli.BoolFlag{Name: "no-validate", Category: sectionOptional,
		Usage: "Disable signature validation (not recommended)"}},
	{arg: "file", flag: &cli.StringFlag{Name: "ca-cert", TakesFile: true, Category: sectionOptional,
		Usage: "Certificate authorities (PEM) to trust for HTTPS\ninstead of the system's"}},
	{arg: "ip[:port],...", flag: &cli.StringFlag{Name: "nameserver", Category: sectionOptional,
		Usage: "DNS servers to use (default: the system's,\nelse Android's net.dns1/net.dns2).\nEnvironment: DOWNLOAD_NAMESERVER"}},
	{flag: &cli.BoolFlag{Name: "4", Category: sectionOptional,
		Usage: "Connect over IPv4 only"}},
	{flag: &cli.BoolFlag{Name: "6", Category: sectionOptional,
		Usage: "Connect over IPv6 only"}},
	{flag: &cli.BoolFlag{Name: "flush-cache", Category: sectionOptional,
		Usage: "Flush the local copy (if present)"}},
	{flag: &cli.BoolFlag{Name: "force-cache", Category: sectionOptional,
		Usage: "Force the use of the local copy even if expired"}},
	{flag: &cli.BoolFlag{Name: "verbose", Category: sectionOptional,
		Usage: "Print more information about what is happening"}},
	{flag: &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Category: sectionOptional,
		Usage: "Print only errors, warnings and the create message"}},
	{flag: &cli.BoolFlag{Name: "allow-downgrade", Category: sectionOptional,
		Usage: "Accept an index or build older than one seen before"}},
	{arg: "age", flag: &cli.StringFlag{Name: "max-index-age", Category: sectionOptional,
		Usage: "Refuse an index signed longer ago (default: 14d;\noff: any age)"}},
	{arg: "duration", flag: &cli.StringFlag{Name: "wait", Category: sectionOptional,
		Usage: "How long to wait for another run on the same\nimage (default: 10m)"}},
	{arg: "size", flag: &cli.StringFlag{Name: "max-rootfs-size", Category: sectionOptional,
		Usage: "Largest rootfs.tar.xz to download (default: 8G)"}},
	{arg: "size", flag: &cli.StringFlag{Name: "max-meta-size", Category: sectionOptional,
		Usage: "Largest meta.tar.xz to download (default: 64M)"}},
	{arg: "duration", flag: &cli.StringFlag{Name: "index-ttl", Category: sectionOptional,
		Usage: "How long a listing reuses the index it read last\nwithout asking the server (default: 5m; off: ask)"}},
	{flag: &cli.BoolFlag{Name: "exact-build", Category: sectionOptional,
		Usage: "Fail rather than use an older build when the\nserver has lost the files of the index's build"}},
	{arg: "size", flag: &cli.StringFlag{Name: "memory-budget", Category: sectionOptional,
		Usage: "Memory for decoding the rootfs (default: a quarter\nof the memory available, at most 256M)"}},
	{arg: "size", flag: &cli.StringFlag{Name: "keep-free", Category: sectionOptional,
		Usage: "Free space a download leaves (default: the lesser\nof 256M and 5% of the filesystem; off: none)"}},
	{flag: &cli.BoolFlag{Name: "cache-unpacked", Category: sectionOptional,
		Usage: "Keep the image unpacked in the cache too, and clone\ncontainers from that copy (default: only where the\nfilesystem shares the blocks, as xfs and btrfs do;\n=false: never)"}},

	{arg: "name", flag: &cli.StringFlag{Name: "name", Category: sectionInternal,
		Usage: "The container name"}},
	{arg: "path", flag: &cli.StringFlag{Name: "path", TakesFile: true, Category: sectionInternal,
		Usage: "The path to the container"}},
	{arg: "rootfs", flag: &cli.StringFlag{Name: "rootfs", TakesFile: true, Category: sectionInternal,
		Usage: "The path to the container's rootfs\n(alone: unpack the image there, write no LXC config)"}},
	{arg: "map", flag: &cli.StringFlag{Name: "mapped-uid", Category: sectionInternal,
		Usage: "A uid map (user namespaces)"}},
	{arg: "map", flag: &cli.StringFlag{Name: "mapped-gid", Category: sectionInternal,
		Usage: "A gid map (user namespaces)"}},
}

// environment are the variables the template run's usage lists, with the
// text it prints for each (broken into lines where it breaks it).
var environment = []struct{ names, usage string }{
	{"LXC_CACHE_PATH", "Cache directory (default: /var/cache/lxc, or\n$HOME/.cache/lxc in an unprivileged user namespace)"},
	{"DOWNLOAD_KEYSERVER", "Keyserver, overridden by --keyserver"},
	{"DOWNLOAD_NAMESERVER", "DNS servers, overridden by --nameserver"},
	{"LXC_DOWNLOAD_IDLE_TIMEOUT", "How long a download may receive nothing before\nit is retried (default: 30s)"},
	{"LXC_TEMPLATE_CONFIG, LXC_HOOK_DIR", "LXC's config and hook directories"},
	{"http_proxy, https_proxy, no_proxy", "Proxies for HTTP and HTTPS"},
	{"SSL_CERT_FILE, SSL_CERT_DIR", "Certificate authorities instead of the system's"},
}

// templateFlags are the urfave/cli flags of the template run, with fresh
// values where a flag gathers them (--server).
func templateFlags() []cli.Flag {
	flags := make([]cli.Flag, len(templateOptions))
	for i, o := range templateOptions {
		flags[i] = fresh(o.flag)
	}
	return flags
}

// fresh is f, or a copy of it with a new value where it holds a list.
func fresh(f cli.Flag) cli.Flag {
	if g, ok := f.(*cli.GenericFlag); ok {
		if _, ok := g.Value.(*serverList); ok {
			c := *g
			c.Value = &serverList{}
			return &c
		}
	}
	return f
}

// oneLine is f with its usage on one line, for the places that print it so
// (the commands' help, completion), and the same otherwise. Only the
// template's own flags carry line breaks.
func oneLine(f cli.Flag) cli.Flag {
	join := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	switch f := f.(type) {
	case *cli.StringFlag:
		c := *f
		c.Usage = join(c.Usage)
		return &c
	case *cli.BoolFlag:
		c := *f
		c.Usage = join(c.Usage)
		c.DisableDefaultText = true
		return &c
	case *cli.GenericFlag:
		c := *fresh(f).(*cli.GenericFlag)
		c.Usage = join(c.Usage)
		return &c
	}
	return f
}

// templateFlag returns the template run's flag called name, on one line,
// for a command that takes the same option.
func templateFlag(name string) cli.Flag {
	for _, o := range templateOptions {
		if o.flag.Names()[0] == name {
			return oneLine(o.flag)
		}
	}
	panic("no template option " + name)
}

// flagValues is what optionsFrom reads: a *cli.Context.
type flagValues interface {
	Bool(name string) bool
	String(name string) string
	IsSet(name string) bool
}

// optionsFrom turns parsed flags into Options, checking what can be checked
// without touching the system. A flag the command does not define reads as
// its zero value.
func optionsFrom(c flagValues, s IO) (Options, error) {
	o := Options{
		List:       c.Bool("list"),
		Format:     c.String("format"),
		Dist:       c.String("dist"),
		Release:    c.String("release"),
		Arch:       c.String("arch"),
		Variant:    c.String("variant"),
		VariantSet: c.IsSet("variant"),
		Build:      c.String("build"),
		Servers:    serversOf(c),
		KeyID:      c.String("keyid"),
		Keyserver:  c.String("keyserver"),
		Keyring:    c.String("keyring"),
		CACert:     c.String("ca-cert"),
		Validate:   !c.Bool("no-validate"),
		FlushCache: c.Bool("flush-cache"),
		ForceCache: c.Bool("force-cache"),
		Verbose:    c.Bool("verbose"),
		Quiet:      c.Bool("quiet"),
		Name:       c.String("name"),
		Path:       c.String("path"),
		Rootfs:     c.String("rootfs"),
		MappedUID:  -1,
		MappedGID:  -1,
		CachePath:  s.getenv("LXC_CACHE_PATH"),
		Home:       s.getenv("HOME"),
	}
	if o.Keyserver == "" {
		o.Keyserver = s.getenv("DOWNLOAD_KEYSERVER")
	}
	ns := c.String("nameserver")
	if ns == "" {
		ns = s.getenv("DOWNLOAD_NAMESERVER")
	}
	for _, n := range strings.FieldsFunc(ns, func(r rune) bool { return r == ',' || r == ' ' }) {
		if _, err := fetch.ParseNameserver(n); err != nil {
			return o, usageErrorf("--nameserver: %v", err)
		}
		o.Nameservers = append(o.Nameservers, n)
	}
	switch {
	case c.Bool("4") && c.Bool("6"):
		return o, usageErrorf("-4 and -6 exclude each other")
	case c.Bool("4"):
		o.IPVersion = 4
	case c.Bool("6"):
		o.IPVersion = 6
	}
	var err error
	if o.MappedUID, err = mappedID("mapped-uid", c.String("mapped-uid")); err != nil {
		return o, err
	}
	if o.MappedGID, err = mappedID("mapped-gid", c.String("mapped-gid")); err != nil {
		return o, err
	}
	if o.Format != "text" && o.Format != "json" {
		return o, usageErrorf("--format must be text or json, not %q", o.Format)
	}
	if o.Variant == "" {
		return o, usageErrorf("--variant must not be empty")
	}
	if o.Build != "" && !compat.ValidBuildID(o.Build) {
		return o, usageErrorf("--build must be a build id such as 20261120_05:24, not %q", o.Build)
	}
	if o.Build != "" && o.List {
		return o, usageErrorf("--build is for creating a container; to see the builds: lxc-download list --all-builds")
	}
	for _, srv := range o.Servers {
		if srv == "" {
			return o, usageErrorf("--server must not be empty")
		}
	}
	o.Server = o.Servers[0]
	if o.Verbose && o.Quiet {
		return o, usageErrorf("--verbose and --quiet exclude each other")
	}
	if o.FlushCache && o.ForceCache {
		return o, usageErrorf("--flush-cache and --force-cache exclude each other")
	}
	o.AllowDowngrade = c.Bool("allow-downgrade")
	o.ExactBuild = c.Bool("exact-build")
	if o.IndexTTL, err = parseDuration("index-ttl", c.String("index-ttl"), true); err != nil {
		return o, err
	}
	if o.MaxIndexAge, err = parseDuration("max-index-age", c.String("max-index-age"), true); err != nil {
		return o, err
	}
	if o.LockTimeout, err = parseDuration("wait", c.String("wait"), false); err != nil {
		return o, err
	}
	if o.MaxRootfsSize, err = parseSize("max-rootfs-size", c.String("max-rootfs-size"), false); err != nil {
		return o, err
	}
	if o.MaxMetaSize, err = parseSize("max-meta-size", c.String("max-meta-size"), false); err != nil {
		return o, err
	}
	if o.DiskReserve, err = parseSize("keep-free", c.String("keep-free"), true); err != nil {
		return o, err
	}
	if o.MemoryBudget, err = parseSize("memory-budget", c.String("memory-budget"), false); err != nil {
		return o, err
	}
	switch {
	case !c.IsSet("cache-unpacked"):
		o.CacheUnpacked = cache.UnpackedAuto
	case c.Bool("cache-unpacked"):
		o.CacheUnpacked = cache.UnpackedAlways
	default:
		o.CacheUnpacked = cache.UnpackedNever
	}
	// A bad server is said before anything goes to the network.
	for _, srv := range o.Servers {
		if _, err := fetch.ParseServer(srv); err != nil {
			return o, usageErrorf("%v", err)
		}
	}
	return o, nil
}

// parseDuration reads the value of --flag: a Go duration (36h, 90m) or a
// number of days (14d); "off", where allowed, is -1 (no limit). Empty is 0:
// the default.
func parseDuration(flag, s string, offOK bool) (time.Duration, error) {
	switch {
	case s == "":
		return 0, nil
	case s == "off" && offOK:
		return -1, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseUint(days, 10, 16); err == nil && n > 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	off := ""
	if offOK {
		off = " or off"
	}
	return 0, usageErrorf("--%s must be a duration such as 14d, 36h or 90m%s, not %q", flag, off, s)
}

// parseSize reads the value of --flag: bytes, or a number with a K, M, G
// or T suffix (powers of 1024); "off", where allowed, is -1. Empty is 0:
// the default.
func parseSize(flag, s string, offOK bool) (int64, error) {
	switch {
	case s == "":
		return 0, nil
	case s == "off" && offOK:
		return -1, nil
	}
	num, shift := s, 0
	if i := strings.IndexAny(s, "KMGTkmgt"); i == len(s)-1 || (i >= 0 && (s[i+1:] == "iB" || s[i+1:] == "B")) {
		num, shift = s[:i], 10*(1+strings.IndexByte("KMGT", s[i]&^0x20))
	}
	n, err := strconv.ParseUint(num, 10, 63)
	if err == nil && n > 0 && n <= uint64(1<<62)>>shift {
		return int64(n) << shift, nil
	}
	off := ""
	if offOK {
		off = " or off"
	}
	return 0, usageErrorf("--%s must be a size such as 512M or 8G%s, not %q", flag, off, s)
}

// checkContainerArgs checks that a template run has something to create: the
// container lxc-create passes (--name, --path and --rootfs), or a rootfs
// alone. A person who typed part of a template run learns what is missing,
// and where a command does what they may have meant.
func checkContainerArgs(o Options) error {
	if o.List || o.Rootfs != "" || o.Name != "" || o.Path != "" {
		if !o.List && !o.standalone() && (o.Name == "" || o.Path == "" || o.Rootfs == "") {
			return errNoContainer
		}
		return nil
	}
	switch {
	case o.FlushCache:
		return errors.New("--flush-cache without a container: to remove cached images, run lxc-download cache flush -d DIST [-r RELEASE] [-a ARCH], or cache flush --all")
	case o.Dist != "" && o.Release == "":
		return fmt.Errorf("-d %s needs -r RELEASE, and --rootfs DIR to unpack the image there (lxc-create passes its own); to see the releases: lxc-download --list -d %s", o.Dist, o.Dist)
	case o.Dist != "":
		return fmt.Errorf("nowhere to unpack %s %s: pass --rootfs DIR, or create a container with lxc-create -t download", o.Dist, o.Release)
	}
	return errNoContainer
}

// errNoContainer is the shell template's message for a run without the
// arguments lxc-create passes.
var errNoContainer = errors.New("Please pass the name, path, and rootfs for the container")

// mappedID parses a --mapped-uid/--mapped-gid value; empty and -1 both mean
// "no map", as in the shell template.
func mappedID(flag, v string) (int, error) {
	if v == "" || v == "-1" {
		return -1, nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return -1, usageErrorf("--%s must be a numeric id or -1, not %q", flag, v)
	}
	return int(n), nil
}

// standalone reports whether the run only unpacks an image into Rootfs,
// without a container around it (no --name and no --path).
func (o Options) standalone() bool {
	return o.Rootfs != "" && o.Name == "" && o.Path == ""
}

// lxcDirs returns the LXC_TEMPLATE_CONFIG and LXC_HOOK_DIR values to
// substitute. In order: the environment, the directories beside the templates
// folder this binary is installed in (LXC's layout is PREFIX/share/lxc/
// {templates,config,hooks}), then the build-time defaults.
func lxcDirs(getenv func(string) string) (templateConfig, hookDir string) {
	templateConfig, hookDir = TemplateConfig, HookDir
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil && filepath.Base(filepath.Dir(exe)) == "templates" {
			share := filepath.Dir(filepath.Dir(exe))
			if isDir(filepath.Join(share, "config")) {
				templateConfig = filepath.Join(share, "config")
			}
			if isDir(filepath.Join(share, "hooks")) {
				hookDir = filepath.Join(share, "hooks")
			}
		}
	}
	if v := getenv("LXC_TEMPLATE_CONFIG"); v != "" {
		templateConfig = v
	}
	if v := getenv("LXC_HOOK_DIR"); v != "" {
		hookDir = v
	}
	return templateConfig, hookDir
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// serverList is the value of --server, which may be given several times:
// the servers are tried in that order.
type serverList struct{ servers []string }

// Set implements flag.Value: each --server adds one.
func (l *serverList) Set(v string) error {
	l.servers = append(l.servers, v)
	return nil
}

// String implements flag.Value.
func (l *serverList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.servers, " ")
}

// serversOf reads --server from c: the servers given, or the default.
func serversOf(c flagValues) []string {
	g, ok := c.(interface{ Generic(string) any })
	if !ok {
		return []string{DefaultServer}
	}
	l, _ := g.Generic("server").(*serverList)
	return l.list()
}

// list is the servers given, or the default server.
func (l *serverList) list() []string {
	if l == nil || len(l.servers) == 0 {
		return []string{DefaultServer}
	}
	return append([]string(nil), l.servers...)
}
