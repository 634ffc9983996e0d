package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/lxc/lxc-download/cache"
	"github.com/lxc/lxc-download/compat"
)

// localProgramName is the name LXC gives its local template: invoked by
// it (a symbolic link, or a copy), the binary is `lxc-download local`.
const localProgramName = "lxc-local"

// LocalOptions are the options of the local command, LXC's lxc-local
// template: the tarballs to make the container from, and lxc-create's own.
type LocalOptions struct {
	Metadata string // -m, --metadata FILE: the meta tarball; "" for none
	Fstree   string // -f, --fstree FILE: the rootfs tarball (required)
	// NoDev leaves everything below the tarball's dev directory out
	// (--no-dev).
	NoDev bool

	// Set by lxc-create.
	Name, Path, Rootfs   string
	MappedUID, MappedGID int // -1: none
}

// options are the Options of a template run for the same container, which
// the steps shared with the download template read.
func (lo LocalOptions) options() Options {
	return Options{Name: lo.Name, Path: lo.Path, Rootfs: lo.Rootfs, MappedUID: lo.MappedUID, MappedGID: lo.MappedGID}
}

// localFlags are the local command's options. lxc-create's own are the
// template run's definitions; --no-dev is upstream's, which its getopt
// declares with a value by mistake (so that the option swallows the next
// argument): here it is the switch upstream's usage describes.
func localFlags() []cli.Flag {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "metadata", Aliases: []string{"m"}, TakesFile: true,
			Usage: "The image's meta tarball `FILE` (config, fstab, templates, excludes, create-message)"},
		&cli.StringFlag{Name: "fstree", Aliases: []string{"f"}, TakesFile: true,
			Usage: "The image's rootfs tarball `FILE` (required)"},
		&cli.BoolFlag{Name: "no-dev", DisableDefaultText: true,
			Usage: "Leave out everything below dev/ in the rootfs tarball"},
	}
	for _, name := range []string{"name", "path", "rootfs", "mapped-uid", "mapped-gid"} {
		flags = append(flags, templateFlag(name))
	}
	return flags
}

// localCommand is `lxc-download local`, which the lxc-local template shim
// runs, and which the binary is when it is called lxc-local.
func localCommand(s IO) *cli.Command {
	return &cli.Command{
		Name:  "local",
		Usage: "LXC's local template: make a container from an image's tarballs at hand",
		Description: "What lxc-create -t local runs (make install puts a shim in place of LXC's\n" +
			"lxc-local; a link named lxc-local to the binary does the same). The\n" +
			"rootfs tarball is unpacked and the meta tarball applied as the download\n" +
			"template applies an image's, and the config is laid out as LXC 5.0's\n" +
			"lxc-local lays it out; without a meta tarball, lxc-create's config only\n" +
			"gains lxc.uts.name, as LXC 6.0's lxc-local does. Either tarball may be\n" +
			"compressed with xz, gzip or zstd, or not at all. They are the user's own,\n" +
			"so nothing is verified, but the rootfs is unpacked with every safety rule\n" +
			"of the download template.",
		Flags: localFlags(),
		Action: func(c *cli.Context) error {
			o, err := localOptionsFrom(c)
			if err != nil {
				return err
			}
			return RunLocal(c.Context, o, s)
		},
	}
}

// localOptionsFrom reads the parsed flags of the local command.
func localOptionsFrom(c *cli.Context) (LocalOptions, error) {
	if c.NArg() > 0 {
		return LocalOptions{}, usageErrorf("local takes options only, not %q", c.Args().First())
	}
	o := LocalOptions{
		Metadata: c.String("metadata"),
		Fstree:   c.String("fstree"),
		NoDev:    c.Bool("no-dev"),
		Name:     c.String("name"),
		Path:     c.String("path"),
		Rootfs:   c.String("rootfs"),
	}
	var err error
	if o.MappedUID, err = mappedID("mapped-uid", c.String("mapped-uid")); err != nil {
		return o, err
	}
	if o.MappedGID, err = mappedID("mapped-gid", c.String("mapped-gid")); err != nil {
		return o, err
	}
	return o, nil
}

// ParseLocal reads the local command's arguments (after the word "local",
// or after the program name lxc-local) as the command does: by GNU
// getopt's rules, as every command line of the program. The request is
// HelpRequest for -h or --help.
func ParseLocal(args []string) (LocalOptions, Request, error) {
	c, err := parseFlags(append(localFlags(), helpFlag), args, nil)
	if err != nil {
		return LocalOptions{}, RunRequest, err
	}
	if c.Bool("help") {
		return LocalOptions{}, HelpRequest, nil
	}
	o, err := localOptionsFrom(c)
	return o, RunRequest, err
}

// RunLocal makes a container from local tarballs, as LXC's lxc-local
// template does: it unpacks o.Fstree, leaving out the relevant excludes of
// the meta tarball o.Metadata (and dev/'s content with o.NoDev), and then
// completes and configures the container as the download template does an
// image (see run.place), with the config laid out as LXC 5.0's lxc-local
// lays it out (compat/local.go). The files are the user's own, so nothing
// is verified, but everything else holds as for a download: the tarballs
// are checked before anything is written, the rootfs is unpacked into a
// private stage with every safety rule and installed only once complete,
// and a rootfs that is not empty is refused, untouched.
func RunLocal(ctx context.Context, lo LocalOptions, s IO) (err error) {
	o := lo.options()
	if lo.Fstree == "" {
		return usageErrorf("no rootfs tarball given: pass -f/--fstree FILE")
	}
	if !o.standalone() && (o.Name == "" || o.Path == "" || o.Rootfs == "") {
		return errNoContainer
	}
	r := &run{o: o, s: s, out: s.Stdout, warned: map[string]bool{}, unpackWarn: &onceLines{w: s.Stderr}}
	if err := r.checkArgs(); err != nil {
		return err
	}
	r.ns = compat.CurrentNamespace()
	r.mode = r.ns.Mode()
	if r.ns == compat.InUserns && o.MappedUID < 0 && !o.standalone() {
		return errors.New("In a user namespace without a map")
	}
	tarball, _, err := openLocalTarball("rootfs tarball", lo.Fstree)
	if err != nil {
		return err
	}
	defer tarball.Close()
	meta, err := readLocalMeta(lo.Metadata, r.mode)
	if err != nil {
		return err
	}

	config, cleanup, err := r.prepareTarget()
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	r.say("Unpacking the rootfs")
	rs, err := cache.NewRootfsStage(o.Rootfs)
	if err != nil {
		return err
	}
	var excludes []string
	if data, ok := meta.Relevant("excludes", r.mode); ok {
		excludes = compat.SplitLines(data)
	}
	if lo.NoDev {
		excludes = append(excludes, compat.NoDevExclude)
	}
	uo := r.unpackOptions(excludes)
	fi, err := tarball.Stat()
	if err != nil {
		rs.Discard()
		return fmt.Errorf("rootfs tarball: %w", err)
	}
	bar := r.unpackBar(fi.Size())
	if bar != nil {
		uo.Progress = func(done, _ int64) { bar.Set64(done) }
	}
	err = rs.UnpackArchive(ctx, tarball, uo)
	if bar != nil {
		if err == nil {
			bar.Finish()
		} else {
			bar.Exit()
		}
	}
	if err != nil {
		rs.Discard()
		return fmt.Errorf("%s: %w", lo.Fstree, err)
	}
	return r.place(rs, config, meta)
}

// openLocalTarball opens one of the user's tarballs and makes sure it is a
// regular file in a format that can be read, so that a wrong file is
// refused before anything is written.
func openLocalTarball(what, path string) (*os.File, cache.Compression, error) {
	// Without O_NONBLOCK, opening a fifo would wait for a writer; a
	// regular file reads the same with it.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", what, err)
	}
	var c cache.Compression
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
			c, err = cache.DetectCompression(head[:n])
		}
	}
	if err != nil {
		f.Close()
		return nil, "", fmt.Errorf("%s: %s: %w", path, what, err)
	}
	return f, c, nil
}

// readLocalMeta reads the meta tarball at path: nil when path is empty (no
// metadata). It must hold a config relevant to mode; its expiry, which
// lxc-local ignores, is not read. An xz tarball is read as a downloaded
// one is (compat.ReadMetaTarball, with its bounds on the xz data); the
// others are decompressed by cache.Decompress and read with the same rules
// and limits on the tar stream and its files.
func readLocalMeta(path string, mode compat.Mode) (compat.MetaFiles, error) {
	if path == "" {
		return nil, nil
	}
	f, c, err := openLocalTarball("meta tarball", path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var files compat.MetaFiles
	if c == cache.XZ {
		files, err = compat.ReadMetaTarball(f)
	} else {
		files, err = readMetaOther(f)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err) // err says "meta tarball"
	}
	if _, ok := files.Relevant("config", mode); !ok {
		return nil, fmt.Errorf("%s: %w", path, compat.ErrNoConfig)
	}
	return files, nil
}

// readMetaOther reads a meta tarball that is not xz. As for an xz one
// (compat.ReadMetaTarball), its size is bounded: by compat.MaxMetaTar,
// which the tar stream inside stays below, so that not even an
// uncompressed one is refused by it.
func readMetaOther(f *os.File) (compat.MetaFiles, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("meta tarball: %w", err)
	}
	if fi.Size() > compat.MaxMetaTar {
		return nil, fmt.Errorf("meta tarball: %d bytes, more than %d", fi.Size(), compat.MaxMetaTar)
	}
	dec, _, err := cache.Decompress(io.LimitReader(f, compat.MaxMetaTar), cache.UnpackOptions{Workers: 1})
	if err != nil {
		return nil, fmt.Errorf("meta tarball: %w", err)
	}
	defer dec.Close()
	return compat.ReadMetaTar(dec)
}
