package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// The benchmark input is built once and kept in the cache directory: a
// debootstrap minbase of Debian bookworm packed the way the image builders
// pack a rootfs.
const (
	inputName     = "rootfs.tar.xz"
	debootstrapOK = "debootstrap"
	mirror        = "http://deb.debian.org/debian"
)

// prepareInput returns the path of the rootfs.tar.xz to benchmark with and
// a one-line description of where it came from. An explicit path wins; then
// a copy cached by an earlier run; then a fresh debootstrap; and where that
// cannot be done (not root, no debootstrap, no network), a synthetic tree.
func prepareInput(explicit, cacheDir string, log io.Writer) (path, origin string, err error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", "", fmt.Errorf("input: %w", err)
		}
		return explicit, "given: " + explicit, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", "", fmt.Errorf("create cache directory: %w", err)
	}
	path = filepath.Join(cacheDir, inputName)
	originFile := path + ".origin"
	if _, err := os.Stat(path); err == nil {
		b, _ := os.ReadFile(originFile)
		return path, strings.TrimSpace(string(b)) + " (cached: " + path + ")", nil
	}
	origin, err = buildDebootstrap(cacheDir, path, log)
	if err != nil {
		fmt.Fprintf(log, "bench: no debootstrap input (%v); using a synthetic tree\n", err)
		if origin, err = buildSynthetic(path); err != nil {
			return "", "", err
		}
	}
	if err := os.WriteFile(originFile, []byte(origin+"\n"), 0o644); err != nil {
		return "", "", err
	}
	return path, origin, nil
}

// buildDebootstrap makes a bookworm minbase tree and packs it into out.
func buildDebootstrap(cacheDir, out string, log io.Writer) (string, error) {
	if os.Geteuid() != 0 {
		return "", errors.New("debootstrap needs root")
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", err
	}
	dir := filepath.Join(cacheDir, "debootstrap")
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(log, "bench: debootstrap --variant=minbase bookworm %s %s (once; a few minutes)\n", dir, mirror)
	cmd := exec.Command("debootstrap", "--variant=minbase", "bookworm", dir, mirror)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("debootstrap: %w", err)
	}
	// Like the image builders' "apt-get clean": no image ships the .debs
	// debootstrap leaves in the apt cache.
	debs, _ := filepath.Glob(filepath.Join(dir, "var/cache/apt/archives/*.deb"))
	for _, d := range debs {
		if err := os.Remove(d); err != nil {
			return "", err
		}
	}
	if err := packTree(dir, out); err != nil {
		return "", err
	}
	return "debootstrap --variant=minbase bookworm, apt cache cleaned", nil
}

// packTree packs dir into out as the image builders do: GNU tar with
// xattrs, sorted names and numeric owners, then xz with one thread per core
// at the default level, which cuts the stream into independent blocks.
func packTree(dir, out string) error {
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	tarCmd := exec.Command("tar", "--xattrs", "--sort=name", "--numeric-owner", "-C", dir, "-cf", "-", ".")
	xzCmd := exec.Command("xz", "--threads=0")
	pipe, err := tarCmd.StdoutPipe()
	if err != nil {
		f.Close()
		return err
	}
	xzCmd.Stdin, xzCmd.Stdout = pipe, f
	tarCmd.Stderr, xzCmd.Stderr = os.Stderr, os.Stderr
	if err := xzCmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("xz: %w", err)
	}
	tarErr := tarCmd.Run()
	xzErr := xzCmd.Wait()
	if err := f.Close(); err != nil {
		return err
	}
	if tarErr != nil {
		return fmt.Errorf("tar: %w", tarErr)
	}
	if xzErr != nil {
		return fmt.Errorf("xz: %w", xzErr)
	}
	return os.Rename(tmp, out)
}

// buildSynthetic packs fetchtest's synthetic rootfs, sized like a
// debootstrap minbase (about 6,700 entries, 170 MB), into out: the tar as
// `tar --xattrs --sort=name` writes it, compressed by xz --threads=0 where
// xz is installed, else by fetchtest's encoder in the same 24 MiB blocks.
func buildSynthetic(out string) (string, error) {
	t, err := fetchtest.Tarball(fetchtest.SyntheticRootfs(6700, 170_000_000, 1))
	if err != nil {
		return "", err
	}
	tmp := out + ".tmp"
	defer os.Remove(tmp)
	if _, err := exec.LookPath("xz"); err == nil {
		f, err := os.Create(tmp)
		if err != nil {
			return "", err
		}
		cmd := exec.Command("xz", "--threads=0")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(t), f, os.Stderr
		err = cmd.Run()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", fmt.Errorf("xz: %w", err)
		}
	} else {
		xz, err := fetchtest.XZ(t, 24<<20)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(tmp, xz, 0o644); err != nil {
			return "", err
		}
	}
	return "fetchtest.SyntheticRootfs(6700, 170 MB, seed 1)", os.Rename(tmp, out)
}
