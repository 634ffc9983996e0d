package cmd

import (
	"os"
	"path/filepath"
	"time"
)

// Build-time defaults, set with -ldflags "-X github.com/lxc/lxc-download/cmd.NAME=VALUE"
// by packagers whose LXC lives elsewhere. Each is also looked up at run time
// (see lxcDirs) so one binary works on hosts where LXC is installed under
// another prefix.
var (
	// Version is this program's version; it goes into the User-Agent.
	Version = "0.1.0"
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
	VariantSet                   bool // --variant given: --list filters by it
	Server                       string

	Validate  bool   // false with --no-validate
	KeyID     string // --keyid
	Keyserver string // --keyserver, else $DOWNLOAD_KEYSERVER
	Keyring   string // --keyring FILE

	CACert      string   // --ca-cert FILE: trust these CAs for HTTPS
	Nameservers []string // --nameserver, else $DOWNLOAD_NAMESERVER

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

	// Set by lxc-create.
	Name, Path, Rootfs   string
	MappedUID, MappedGID int // -1: none

	CachePath string // $LXC_CACHE_PATH
	Home      string // $HOME
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
