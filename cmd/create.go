package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/schollz/progressbar/v3"

	"github.com/lxc/lxc-download/cache"
	"github.com/lxc/lxc-download/cache/xzpar"
	"github.com/lxc/lxc-download/compat"
)

// create makes the container (SPEC 6 and 7): the image from the cache or
// the server, unpacked into a private stage, completed there (templates,
// dev/pts), put in place only once everything has verified, and the
// container's config and fstab written. A run that fails leaves the rootfs
// as it found it: empty.
func (r *run) create(ctx context.Context) (err error) {
	config, cleanup, err := r.prepareTarget()
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	img, err := r.obtain(ctx)
	if err != nil {
		return err
	}
	defer img.close()

	r.say("Unpacking the rootfs")
	rs, err := r.unpackInto(ctx, img)
	var budget *xzpar.LimitError
	if errors.As(err, &budget) {
		return fmt.Errorf("%w (--memory-budget gives it more)", err)
	}
	if err != nil {
		return err
	}
	return r.place(rs, config, img.meta)
}

// place finishes a container from the rootfs unpacked in rs and the
// image's meta files (nil: none, as lxc-local allows): it completes the
// rootfs in the stage, installs it, writes the config (over current, the
// one lxc-create wrote) and fstab, and shows the create-message. These are
// the steps the download and local templates share. On failure the stage
// is discarded, and a rootfs already installed is emptied again.
func (r *run) place(rs *cache.RootfsStage, current []byte, meta compat.MetaFiles) error {
	o := r.o
	if err := r.complete(rs.Dir, meta); err != nil {
		rs.Discard()
		return err
	}
	if err := rs.Install(); err != nil {
		rs.Discard()
		return err
	}
	if o.standalone() {
		return nil
	}
	if err := r.configure(current, meta); err != nil {
		// The rootfs was empty before this run put it there.
		if eerr := cache.EmptyTarget(o.Rootfs); eerr != nil {
			return fmt.Errorf("%w; and removing the unpacked rootfs failed: %v", err, eerr)
		}
		return err
	}
	if msg, ok := meta.Relevant("create-message", r.mode); ok {
		fmt.Fprint(r.s.Stdout, "\n---\n")
		// The image's own words, shown on the user's terminal.
		r.s.Stdout.Write(compat.Printable(msg))
	}
	return nil
}

// prepareTarget checks, before anything is downloaded, that the container
// can be made: its directory and config (a regular file, never followed
// through a symbolic link), and an empty rootfs directory, left so by
// every earlier run. A standalone rootfs is created if missing. It returns
// the container's config as lxc-create wrote it, and what to undo if the
// run fails.
func (r *run) prepareTarget() (config []byte, cleanup func(), err error) {
	o := r.o
	cleanup = func() {}
	if o.standalone() {
		made, err := mkdirAllMade(o.Rootfs)
		if err != nil {
			return nil, nil, fmt.Errorf("create rootfs: %w", err)
		}
		// A failed run leaves no trace of what it made: the rootfs and
		// the parents it had to make, each only if still empty.
		cleanup = func() {
			for _, d := range made {
				os.Remove(d)
			}
		}
	} else {
		if !isDir(o.Rootfs) {
			return nil, nil, fmt.Errorf("rootfs directory %s does not exist", o.Rootfs)
		}
		if !isDir(o.Path) {
			return nil, nil, fmt.Errorf("container directory %s does not exist", o.Path)
		}
		if config, err = cache.ReadContainerConfig(o.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, err
		}
	}
	if err := cache.CleanStaleStages(o.Rootfs); err != nil {
		cleanup()
		return nil, nil, err
	}
	if err := cache.CheckEmptyTarget(o.Rootfs); err != nil {
		cleanup()
		return nil, nil, err
	}
	return config, cleanup, nil
}

// mkdirAllMade is os.MkdirAll(dir, 0755) that returns the directories it
// made, deepest first.
func mkdirAllMade(dir string) ([]string, error) {
	var made []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || !errors.Is(err, os.ErrNotExist) || d == filepath.Dir(d) {
			break
		}
		made = append(made, d)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return made, nil
}

// complete finishes the rootfs in its stage dir, before anyone can reach
// it: the image's templates (SPEC 7.4), the mingetty fix (7.5) and
// dev/pts (7.1).
func (r *run) complete(dir string, meta compat.MetaFiles) error {
	o := r.o
	if !o.standalone() {
		tc, hd := lxcDirs(r.s.getenv)
		vars := compat.Vars{Name: o.Name, Path: o.Path, Rootfs: o.Rootfs, TemplateConfig: tc, HookDir: hd}
		var templates []string
		if data, ok := meta.Relevant("templates", r.mode); ok {
			templates = compat.SplitLines(data)
		}
		if err := cache.ApplyTemplates(dir, templates, vars, r.unpackWarn); err != nil {
			return err
		}
		if err := cache.RewriteInRootfs(dir, "etc/init/tty.conf", cache.RewriteBytes(compat.FixMingetty), r.unpackWarn); err != nil {
			return fmt.Errorf("fix mingetty: %w", err)
		}
	}
	pts, err := securejoin.SecureJoin(dir, "dev/pts")
	if err != nil {
		return fmt.Errorf("create dev/pts: %w", err)
	}
	if err := os.MkdirAll(pts, 0o755); err != nil {
		return fmt.Errorf("create dev/pts: %w", err)
	}
	return nil
}

// configure writes LXC_PATH/config and fstab (SPEC 7.2, 7.3, 7.4, 7.6),
// each replaced whole: current is the config lxc-create wrote. Without
// meta files (lxc-local without -m), the config only gains the container's
// name (see compat.AppendUTSName).
func (r *run) configure(current []byte, meta compat.MetaFiles) error {
	o := r.o
	if meta == nil {
		if err := cache.WriteContainerFile(o.Path, "config", compat.AppendUTSName(current, o.Name), 0o640, o.MappedUID, o.MappedGID); err != nil {
			return fmt.Errorf("write container config: %w", err)
		}
		return nil
	}
	tc, hd := lxcDirs(r.s.getenv)
	vars := compat.Vars{Name: o.Name, Path: o.Path, Rootfs: o.Rootfs, TemplateConfig: tc, HookDir: hd}
	imageConfig, _ := meta.Relevant("config", r.mode)
	fstab, hasFstab := meta.Relevant("fstab", r.mode)
	config := compat.RewriteConfig(current, imageConfig, hasFstab, o.Path, o.Name)
	// As in the shell template, the files are handed to the mapped ids
	// when there are some (-1 leaves an id as it is).
	if err := cache.WriteContainerFile(o.Path, "config", vars.Substitute(config), 0o640, o.MappedUID, o.MappedGID); err != nil {
		return fmt.Errorf("write container config: %w", err)
	}
	if hasFstab {
		if err := cache.WriteContainerFile(o.Path, "fstab", vars.Substitute(fstab), 0o644, o.MappedUID, o.MappedGID); err != nil {
			return fmt.Errorf("write container fstab: %w", err)
		}
	}
	return nil
}

// unpackBar is the progress bar of an unpack from the cache, on a terminal
// only: in a log, "Unpacking the rootfs" says all there is. (A rootfs
// unpacked while it downloads is covered by the download's bar.)
func (r *run) unpackBar(size int64) *progressbar.ProgressBar {
	if r.out == io.Discard || !r.s.StdoutTerminal {
		return nil
	}
	return progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(r.s.Stdout),
		progressbar.OptionSetDescription("unpacking"),
		progressbar.OptionShowBytes(true),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionFullWidth(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(r.s.Stdout) }))
}

// unpackOptions are the options of every unpack of this run.
func (r *run) unpackOptions(excludes []string) cache.UnpackOptions {
	return cache.UnpackOptions{Excludes: excludes, Userns: r.mode == compat.User, Warn: r.unpackWarn, MemoryBudget: r.o.MemoryBudget}
}
