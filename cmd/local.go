package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"

	"github.com/lxc/lxc-download/cache"
	"github.com/lxc/lxc-download/compat"
)

// LocalOptions are the options of the lxc-local template: lxc-create's own
// and the tarballs to make the container from.
type LocalOptions struct {
	Help     bool   // -h, --help
	Metadata string // -m, --metadata FILE: the meta tarball; "" for none
	Fstree   string // -f, --fstree FILE: the rootfs tarball (required)
	// NoDev leaves everything below the tarball's dev directory out
	// (--no-dev).
	NoDev bool

	// Set by lxc-create.
	Name, Path, Rootfs   string
	MappedUID, MappedGID int // -1: none
}

// standalone reports whether the run only unpacks into Rootfs, without a
// container around it (no --name and no --path), as lxc-download does.
func (o LocalOptions) standalone() bool {
	return o.Rootfs != "" && o.Name == "" && o.Path == ""
}

// localUsageText is what lxc-local --help prints: the shell template's
// layout, with --no-dev and standalone use.
const localUsageText = `LXC local template: creates a container from local tarballs

Special arguments:
[ -h | --help ]: Print this help message and exit
[ -m | --metadata <file> ]: The image's meta tarball (config, fstab,
                            templates, excludes, create-message)
[ -f | --fstree <file> ]: The image's rootfs tarball (required)
[ --no-dev ]: Leave out everything below /dev in the rootfs tarball

Both tarballs may be compressed with xz, gzip or zstd, or not at all.

LXC internal arguments (do not pass manually!):
[ --name <name> ]: The container name
[ --path <path> ]: The path to the container
[ --rootfs <rootfs> ]: The path to the container's rootfs
                       (alone: unpack the image there, write no LXC config)
[ --mapped-uid <map> ]: A uid map (user namespaces)
[ --mapped-gid <map> ]: A gid map (user namespaces)

Environment variables:
LXC_TEMPLATE_CONFIG, LXC_HOOK_DIR: LXC's config and hook directories
`

// localUsageError is an error in the arguments themselves: MainLocal
// reports it with the usage text.
type localUsageError struct{ msg string }

func (e localUsageError) Error() string { return e.msg }

// localUsage makes a localUsageError; what was typed is shown without
// its control characters, so the message stays one line.
func localUsage(format string, args ...any) error {
	return localUsageError{compat.PrintableLine(fmt.Sprintf(format, args...))}
}

// localOption is one long option of lxc-local and whether it takes a
// value; the short options are -h, -m and -f.
type localOption struct {
	name     string
	hasValue bool
}

var localOptions = []localOption{
	{"help", false}, {"metadata", true}, {"fstree", true}, {"no-dev", false},
	{"name", true}, {"path", true}, {"rootfs", true}, {"mapped-uid", true}, {"mapped-gid", true},
}

// ParseLocal reads lxc-local's arguments (args does not include the
// program name) the way the shell template's GNU getopt did: --opt=value
// and --opt value, an unambiguous prefix of a long option (--meta), -m
// FILE and -mFILE, clustered short options (-hfFILE), and "--" ending the
// options. Repeated options keep the last value. An unknown or ambiguous
// option, a missing value, a value given to --help or --no-dev, and any
// argument that is not an option (the shell template ignored them) are
// errors.
func ParseLocal(args []string) (LocalOptions, error) {
	o := LocalOptions{MappedUID: -1, MappedGID: -1}
	values := map[string]string{}
	// next takes the argument after the current one as a value.
	i := 0
	next := func(opt string) (string, error) {
		if i+1 == len(args) {
			return "", localUsage("option %s needs a value", opt)
		}
		i++
		return args[i], nil
	}
	for ; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			if i+1 < len(args) {
				return o, localUsage("unexpected argument %q", args[i+1])
			}
		case strings.HasPrefix(a, "--"):
			name, value, hasValue := strings.Cut(a[2:], "=")
			if name == "" {
				return o, localUsage("unknown option %s", a)
			}
			opt, err := matchLocalOption(name)
			if err != nil {
				return o, err
			}
			if !opt.hasValue && hasValue {
				return o, localUsage("option --%s takes no value", opt.name)
			}
			if opt.hasValue && !hasValue {
				if value, err = next("--" + opt.name); err != nil {
					return o, err
				}
			}
			values[opt.name] = value
		case len(a) > 1 && a[0] == '-':
			if err := parseLocalShort(a, values, next); err != nil {
				return o, err
			}
		default:
			return o, localUsage("unexpected argument %q", a)
		}
	}
	_, o.Help = values["help"]
	_, o.NoDev = values["no-dev"]
	o.Metadata, o.Fstree = values["metadata"], values["fstree"]
	o.Name, o.Path, o.Rootfs = values["name"], values["path"], values["rootfs"]
	var err error
	if o.MappedUID, err = localMappedID("mapped-uid", values["mapped-uid"]); err != nil {
		return o, err
	}
	if o.MappedGID, err = localMappedID("mapped-gid", values["mapped-gid"]); err != nil {
		return o, err
	}
	return o, nil
}

// parseLocalShort reads a cluster of short options such as -h, -mFILE or
// -hm (whose value is then the next argument, taken by next).
func parseLocalShort(a string, values map[string]string, next func(string) (string, error)) error {
	for j := 1; j < len(a); j++ {
		var name string
		switch a[j] {
		case 'h':
			values["help"] = ""
			continue
		case 'm':
			name = "metadata"
		case 'f':
			name = "fstree"
		default:
			return localUsage("unknown option -%c", a[j])
		}
		if value := a[j+1:]; value != "" {
			values[name] = value
			return nil
		}
		value, err := next("-" + a[j:j+1])
		if err != nil {
			return err
		}
		values[name] = value
		return nil
	}
	return nil
}

// matchLocalOption finds the long option name stands for: itself, or the
// only option it is a prefix of (getopt_long's rule).
func matchLocalOption(name string) (localOption, error) {
	var found []localOption
	for _, opt := range localOptions {
		if opt.name == name {
			return opt, nil
		}
		if strings.HasPrefix(opt.name, name) {
			found = append(found, opt)
		}
	}
	switch len(found) {
	case 0:
		return localOption{}, localUsage("unknown option --%s", name)
	case 1:
		return found[0], nil
	}
	names := make([]string, len(found))
	for i, opt := range found {
		names[i] = "--" + opt.name
	}
	return localOption{}, localUsage("option --%s is ambiguous (%s)", name, strings.Join(names, ", "))
}

// localMappedID parses a --mapped-uid/--mapped-gid value: empty and -1
// both mean "no map".
func localMappedID(flag, v string) (int, error) {
	if v == "" || v == "-1" {
		return -1, nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return -1, localUsage("--%s must be a numeric id or -1, not %q", flag, v)
	}
	return int(n), nil
}

// MainLocal runs the lxc-local template with args (without the program
// name) and returns the exit status: 0 on success, 1 on any error, after
// one "ERROR: ..." line on s.Stderr (and the usage, for a bad argument).
func MainLocal(args []string, s IO) int {
	o, err := ParseLocal(args)
	if err != nil {
		fmt.Fprintf(s.Stderr, "ERROR: %s\n\n%s", err, localUsageText)
		return 1
	}
	if o.Help {
		fmt.Fprint(s.Stdout, localUsageText)
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := RunLocal(ctx, o, s); err != nil {
		fmt.Fprintf(s.Stderr, "ERROR: %s\n", errorText(err))
		return 1
	}
	return 0
}

// localImage is what a local run takes from the meta tarball.
type localImage struct {
	hasMeta       bool
	config        []byte
	fstab         []byte
	hasFstab      bool
	templates     []string
	excludes      []string
	createMessage []byte
	hasMessage    bool
}

// RunLocal makes a container from local tarballs, as LXC's lxc-local
// template does: it unpacks o.Fstree into o.Rootfs, leaving out the
// relevant excludes of the meta tarball o.Metadata (and /dev's content
// with o.NoDev), then writes LXC_PATH/config and fstab and applies the
// templates and create-message of the metadata. The config and the rootfs
// are byte for byte the shell template's (see compat/local.go for its
// layout). The files are the user's own, so nothing is verified, but the
// rootfs is unpacked with every rule of the download (nothing outside it is
// written, limits hold). Every check of the arguments and the tarballs
// that can be made before anything is written is made first; if the rootfs
// was empty and anything fails, it is emptied again.
func RunLocal(ctx context.Context, o LocalOptions, s IO) (err error) {
	if err := checkLocalArgs(o); err != nil {
		return err
	}
	ns := compat.CurrentNamespace()
	mode := ns.Mode()
	if ns == compat.InUserns && o.MappedUID < 0 && !o.standalone() {
		return errors.New("In a user namespace without a map")
	}
	rootfsFile, err := openLocalTarball("rootfs tarball", o.Fstree)
	if err != nil {
		return err
	}
	defer rootfsFile.Close()
	img, err := readLocalMeta(o.Metadata, mode)
	if err != nil {
		return err
	}
	if err := checkLocalTarget(o); err != nil {
		return err
	}

	excludes := img.excludes
	if o.NoDev {
		excludes = append(excludes, compat.NoDevExclude)
	}
	rootfsEmpty := isEmptyDir(o.Rootfs)
	defer func() {
		if err != nil && rootfsEmpty {
			emptyDir(o.Rootfs)
		}
	}()
	fmt.Fprintln(s.Stdout, "Unpacking the rootfs")
	uo := cache.UnpackOptions{Excludes: excludes, Userns: mode == compat.User, Warn: &onceLines{w: s.Stderr}}
	if err := cache.UnpackArchive(ctx, rootfsFile, o.Rootfs, uo); err != nil {
		return fmt.Errorf("%s: %w", o.Fstree, err)
	}
	// /dev may have been excluded; the container needs /dev/pts.
	pts, err := securejoin.SecureJoin(o.Rootfs, "dev/pts")
	if err != nil {
		return fmt.Errorf("create dev/pts: %w", err)
	}
	if err := os.MkdirAll(pts, 0o755); err != nil {
		return fmt.Errorf("create dev/pts: %w", err)
	}
	if o.standalone() {
		return nil
	}
	return configureLocal(o, img, s)
}

// checkLocalArgs checks the arguments before anything is opened.
func checkLocalArgs(o LocalOptions) error {
	if o.Fstree == "" {
		return errors.New("no rootfs tarball given: pass -f/--fstree FILE")
	}
	if !o.standalone() && (o.Name == "" || o.Path == "" || o.Rootfs == "") {
		return errors.New("Please pass the name, path, and rootfs for the container")
	}
	// They become lines of the config (lxc.uts.name, lxc.mount.fstab) and
	// words substituted in files: see checkArgs.
	for _, a := range []struct{ flag, v string }{{"--name", o.Name}, {"--path", o.Path}, {"--rootfs", o.Rootfs}} {
		if compat.HasControl(a.v) {
			return fmt.Errorf("%s %q has a control character or is not UTF-8", a.flag, a.v)
		}
	}
	return nil
}

// openLocalTarball opens one of the user's tarballs and makes sure it is
// a regular file in a format that can be read, so that a wrong file is
// refused before anything is written.
func openLocalTarball(what, path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err == nil {
		head := make([]byte, 512)
		n, rerr := f.ReadAt(head, 0)
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			err = rerr
		} else {
			_, err = cache.DetectCompression(head[:n])
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %s: %w", path, what, err)
	}
	return f, nil
}

// readLocalMeta reads the meta tarball at path (none when path is empty)
// and picks the files a run needs.
func readLocalMeta(path string, mode compat.Mode) (*localImage, error) {
	img := &localImage{}
	if path == "" {
		return img, nil
	}
	f, err := openLocalTarball("meta tarball", path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec, _, err := cache.Decompress(f, cache.UnpackOptions{Workers: 1})
	if err != nil {
		return nil, fmt.Errorf("%s: meta tarball: %w", path, err)
	}
	files, err := compat.ReadMetaTar(dec)
	dec.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err) // err says "meta tarball"
	}
	img.hasMeta = true
	var ok bool
	if img.config, ok = files.Relevant("config", mode); !ok {
		return nil, compat.ErrNoConfig
	}
	img.fstab, img.hasFstab = files.Relevant("fstab", mode)
	img.createMessage, img.hasMessage = files.Relevant("create-message", mode)
	if data, ok := files.Relevant("templates", mode); ok {
		img.templates = compat.SplitLines(data)
	}
	if data, ok := files.Relevant("excludes", mode); ok {
		img.excludes = compat.SplitLines(data)
	}
	return img, nil
}

// checkLocalTarget makes sure the rootfs (and, for a container, its
// directory) exist; a standalone rootfs is made.
func checkLocalTarget(o LocalOptions) error {
	if o.standalone() {
		if err := os.MkdirAll(o.Rootfs, 0o755); err != nil {
			return fmt.Errorf("create rootfs: %w", err)
		}
		return nil
	}
	if !isDir(o.Rootfs) {
		return fmt.Errorf("rootfs directory %s does not exist", o.Rootfs)
	}
	if !isDir(o.Path) {
		return fmt.Errorf("container directory %s does not exist", o.Path)
	}
	return nil
}

// configureLocal writes LXC_PATH/config and fstab and applies the
// templates, as the shell lxc-local does after unpacking.
func configureLocal(o LocalOptions, img *localImage, s IO) error {
	tc, hd := lxcDirs(s.getenv)
	vars := compat.Vars{Name: o.Name, Path: o.Path, Rootfs: o.Rootfs, TemplateConfig: tc, HookDir: hd}
	configPath := filepath.Join(o.Path, "config")
	current, err := os.ReadFile(configPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read container config: %w", err)
	}
	var config []byte
	if img.hasMeta {
		config = vars.Substitute(compat.RewriteConfig(current, img.config, img.hasFstab, o.Path, o.Name))
	} else {
		config = compat.AppendUTSName(current, o.Name)
	}
	if err := replaceFile(configPath, config, 0o640); err != nil {
		return fmt.Errorf("write container config: %w", err)
	}
	owned := []string{configPath}
	if img.hasFstab {
		fstabPath := filepath.Join(o.Path, "fstab")
		if err := replaceFile(fstabPath, vars.Substitute(img.fstab), 0o644); err != nil {
			return fmt.Errorf("write container fstab: %w", err)
		}
		owned = append(owned, fstabPath)
	}
	for _, t := range img.templates {
		if err := rewriteInRootfs(o.Rootfs, t, vars.Substitute); err != nil {
			return fmt.Errorf("apply template %s: %w", t, err)
		}
	}
	if err := rewriteInRootfs(o.Rootfs, "etc/init/tty.conf", compat.FixMingetty); err != nil {
		return fmt.Errorf("fix mingetty: %w", err)
	}
	if o.MappedUID >= 0 || o.MappedGID >= 0 {
		// The shell lxc-local leaves them to the namespace's root, which
		// the user who made the container cannot edit; lxc-download hands
		// them over, and so does this. Failing to is not fatal.
		for _, p := range owned {
			_ = os.Lchown(p, o.MappedUID, o.MappedGID)
		}
	}
	if img.hasMessage {
		fmt.Fprint(s.Stdout, "\n---\n")
		s.Stdout.Write(compat.Printable(img.createMessage))
	}
	return nil
}
