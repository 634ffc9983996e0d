package mirror

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
)

// With Options.Incus a build directory also gets the files Incus and LXD
// take for a container (incus.tar.xz, lxd.tar.xz, the squashfs and its
// deltas), as the source's streams list them. They are verified like the
// rest: by the build's signed SHA256SUMS where it lists them, and by the
// streams' sha256 where the streams are signed (both must agree where
// both speak); a file nothing signed vouches for is not mirrored, and its
// build fails. Virtual machine disks are left out: they are many times
// the size of a container's files.

// extraFile is a file of a build that Incus uses.
type extraFile struct {
	// name is the file's name in the build directory, item its item's
	// name in the streams.
	name, item string
	path       string // on the source, below its root
	sha256     string
	size       int64
}

// isVMFile reports an item of a virtual machine image.
func isVMFile(ftype string) bool { return strings.HasPrefix(ftype, "disk-kvm") }

// reservedName reports a name an extra file may not take: the LXC files
// and their signatures, and the names of partial downloads.
func reservedName(name string) bool {
	switch name {
	case fetch.MetaFile, fetch.RootfsFile, "SHA256SUMS", "SHA256SUMS.asc", fetch.MetaFile + ".asc", fetch.RootfsFile + ".asc":
		return true
	}
	return name == "" || name[0] == '.' || strings.HasSuffix(name, ".partial") || strings.HasSuffix(name, ".partial.info")
}

// attachExtras gives each build the Incus files the streams list for it,
// in its own directory.
func (m *run) attachExtras(src *source, builds []*build) error {
	if src.streams == nil {
		m.log.printf("WARNING: %s publishes no simplestreams: there are no Incus files to mirror", m.rep.Source)
		return nil
	}
	files, err := compat.BuildFiles(src.streams.ImagesData)
	if err != nil {
		return fmt.Errorf("the streams of %s: %w", m.rep.Source, err)
	}
	for _, b := range builds {
		if b.rel == "" {
			continue
		}
		key := compat.ProductKey(b.image.Dist, b.image.Release, b.image.Arch, b.image.Variant) + " " + b.entry.Build
		for _, f := range files[key] {
			if f.FileType == compat.RootfsFileType || isVMFile(f.FileType) {
				continue
			}
			rel, err := cleanRel(f.Path)
			if err != nil || filepath.Dir(rel) != b.rel || reservedName(filepath.Base(rel)) {
				m.log.printf("WARNING: %s %s: not mirroring item %s at %q, which is not a file of the build's directory",
					imageName(b.image), b.entry.Build, printable(f.Item), printable(f.Path))
				continue
			}
			b.extras = append(b.extras, extraFile{name: filepath.Base(rel), item: f.Item, path: "/" + rel, sha256: f.SHA256, size: f.Size})
		}
	}
	return nil
}

// missingExtras are the build's Incus files that its directory does not
// hold as the streams list them.
func (m *run) missingExtras(b *build, bs *buildState) []extraFile {
	var out []extraFile
	for _, e := range b.extras {
		if bs == nil || bs.Files[e.name] != e.sha256 {
			out = append(out, e)
			continue
		}
		if _, err := os.Stat(filepath.Join(m.dest, b.rel, e.name)); err != nil {
			out = append(out, e)
		}
	}
	return out
}

// extraSum is the digest an extra file must have: what the build's signed
// SHA256SUMS (sums, nil if none) says, and what signed streams say.
func (m *run) extraSum(e extraFile, sums map[string]string, signedStreams bool) (string, error) {
	want := ""
	if sums != nil {
		want, _ = fetch.LookupSHA256(sums, e.name)
	}
	if signedStreams {
		if want != "" && want != e.sha256 {
			return "", fmt.Errorf("the streams list %s with SHA256 %s, the signed SHA256SUMS with %s", e.name, e.sha256, want)
		}
		want = e.sha256
	}
	if want == "" {
		return "", fmt.Errorf("nothing signed vouches for %s: the streams are not signed and SHA256SUMS does not list it", e.name)
	}
	return want, nil
}

// fetchExtras downloads extra files into stage, verified, and records
// them in bs. It returns the bytes downloaded.
func (m *run) fetchExtras(ctx context.Context, c *fetch.Client, extras []extraFile, stage string, sums map[string]string, bs *buildState) (int64, error) {
	var n int64
	signed := m.signedStreams
	for _, e := range extras {
		want, err := m.extraSum(e, sums, signed)
		if err != nil {
			return n, err
		}
		before := partialSize(filepath.Join(stage, e.name+".partial"))
		f, err := c.FetchFileSHA256(ctx, e.path, stage, e.name, want)
		if err != nil {
			return n + max(partialSize(filepath.Join(stage, e.name+".partial"))-before, 0), err
		}
		n += f.Size - before
		bs.Files[e.name] = f.SHA256
	}
	return n, nil
}

func partialSize(p string) int64 {
	if fi, err := os.Stat(p); err == nil {
		return fi.Size()
	}
	return 0
}

// completeExtras fetches the Incus files a build in place lacks (it was
// mirrored before --incus was asked for, or the source added them) and
// moves them into its directory one by one.
func (m *run) completeExtras(ctx context.Context, c *fetch.Client, b *build, bs *buildState) (int64, error) {
	missing := m.missingExtras(b, bs)
	if len(missing) == 0 {
		return 0, nil
	}
	dir := filepath.Join(m.dest, b.rel)
	sums, err := m.signedSums(dir)
	if err != nil {
		return 0, err
	}
	stage := m.stageDir(b.rel)
	if err := os.MkdirAll(stage, 0o700); err != nil {
		return 0, fmt.Errorf("stage: %w", err)
	}
	next := &buildState{Files: map[string]string{}, Published: bs.Published, UnnamedSince: bs.UnnamedSince}
	for k, v := range bs.Files {
		next.Files[k] = v
	}
	n, err := m.fetchExtras(ctx, c, missing, stage, sums, next)
	if err != nil {
		return n, err
	}
	for _, e := range missing {
		p := filepath.Join(stage, e.name)
		if err := os.Chmod(p, 0o644); err != nil {
			return n, fmt.Errorf("stage: %w", err)
		}
		if err := os.Rename(p, filepath.Join(dir, e.name)); err != nil {
			return n, fmt.Errorf("publish %s/%s: %w", b.rel, e.name, err)
		}
	}
	return n, m.st.setBuild(b.rel, next)
}

// signedSums reads and verifies the SHA256SUMS of a build directory in
// place; nil when it has none.
func (m *run) signedSums(dir string) (map[string]string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sig, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS.asc"))
	if err != nil {
		return nil, fmt.Errorf("SHA256SUMS without its signature: %w", err)
	}
	if err := fetch.VerifyDetached(m.o.Source.Keyring, "SHA256SUMS", data, sig); err != nil {
		return nil, err
	}
	return fetch.ParseSHA256SUMS(data)
}
