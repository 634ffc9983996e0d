package cmd

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/urfave/cli/v2"

	"github.com/lxc/lxc-download/cache"
	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
)

// An export file is a tar of cache entries, to carry verified images to a
// host that cannot reach the server: for each image, under
// DIST/RELEASE/ARCH/VARIANT/, its record (exportRecordName: the build and
// the evidence it was verified with), then meta.tar.xz, then rootfs.tar.xz.
// The tarballs are already compressed, and a tar needs no tool to be read.
const exportRecordName = "record.json"

// Bounds on what an import reads, whatever the file says.
const (
	maxExportRecord = 4 << 20
	maxExportMeta   = fetch.DefaultMaxMetaSize
)

// exportRecord is what an export says of one image besides its tarballs.
type exportRecord struct {
	Format        int               `json:"format"`
	Build         string            `json:"build"`
	Keys          []string          `json:"keys,omitempty"`
	SHA256SUMS    []byte            `json:"sha256sums,omitempty"`
	SHA256SUMSSig []byte            `json:"sha256sums_asc,omitempty"`
	Signatures    map[string][]byte `json:"signatures,omitempty"`
}

const exportFormat = 1

// exportCommand is `cache export`.
func exportCommand(s IO) *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "Write the chosen cached images, with what they were verified with, to a tar file",
		ArgsUsage: "FILE.tar",
		Flags:     append(cacheImageFlags(), formatFlag()),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErrorf("cache export takes one FILE.tar")
			}
			file := c.Args().First()
			return cacheActionArgs(c, s, func(op cacheOp) error { return op.export(file) })
		},
	}
}

// importCommand is `cache import`.
func importCommand(s IO) *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "Verify the images of a file cache export wrote, and store those that verify",
		ArgsUsage: "FILE.tar",
		Flags:     []cli.Flag{templateFlag("keyring"), templateFlag("allow-downgrade"), formatFlag()},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErrorf("cache import takes one FILE.tar")
			}
			kr, err := keyringFor(c.String("keyring"))
			if err != nil {
				return err
			}
			file := c.Args().First()
			return cacheActionArgs(c, s, func(op cacheOp) error { return op.importFile(file, kr, c.Bool("allow-downgrade")) })
		},
	}
}

// keyringFor is the built-in key, or the keys of the file keyring.
func keyringFor(keyring string) (openpgp.EntityList, error) {
	if keyring != "" {
		return fetch.ReadKeyring(keyring)
	}
	return fetch.BuiltinKeyring()
}

// export writes the chosen entries to file: through a temporary file
// beside it, renamed only once whole.
func (op cacheOp) export(file string) (err error) {
	imgs, err := op.keys()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	tw := tar.NewWriter(tmp)
	var done []cachedImage
	for i := range imgs {
		img := &imgs[i]
		err := op.inspect(img, func(e *cache.Entry) error {
			if e == nil || !e.Trust.Verified {
				img.Action = "not exported"
				return nil
			}
			if err := writeExport(tw, img, e); err != nil {
				return err
			}
			img.Action = "exported"
			return nil
		})
		if err != nil {
			return fmt.Errorf("export %s: %w", img.name(), err)
		}
		done = append(done, *img)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return op.report(done, true)
}

// writeExport writes one entry: its record, meta tarball and rootfs
// tarball, the last read through the entry's check.
func writeExport(tw *tar.Writer, img *cachedImage, e *cache.Entry) error {
	dir := path.Join(img.Dist, img.Release, img.Arch, img.Variant)
	rec, err := json.Marshal(exportRecord{Format: exportFormat, Build: e.BuildID, Keys: e.Trust.Keys,
		SHA256SUMS: e.Trust.SHA256SUMS, SHA256SUMSSig: e.Trust.SHA256SUMSSig, Signatures: e.Trust.Signatures})
	if err != nil {
		return err
	}
	mod := e.Fetched
	for _, f := range []struct {
		name string
		data []byte
	}{{exportRecordName, rec}, {fetch.MetaFile, e.MetaTarball()}} {
		if err := tw.WriteHeader(&tar.Header{Name: path.Join(dir, f.name), Mode: 0o644, Size: int64(len(f.data)), ModTime: mod, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	rootfs, err := e.OpenRootfs()
	if err != nil {
		return err
	}
	defer rootfs.Close()
	if err := tw.WriteHeader(&tar.Header{Name: path.Join(dir, fetch.RootfsFile), Mode: 0o644, Size: rootfs.Size(), ModTime: mod, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	// A cached copy that no longer matches its record fails here.
	_, err = io.Copy(tw, rootfs)
	return err
}

// importFile verifies and stores each image of file. An image that does
// not verify is reported and left out; the others are stored. It fails
// when one was left out.
func (op cacheOp) importFile(file string, kr openpgp.EntityList, allowDowngrade bool) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var imgs []cachedImage
	var failed []string
	for {
		img, err := op.importOne(tr, kr, allowDowngrade)
		if err == io.EOF {
			break
		}
		if img == nil {
			// The file itself is broken: nothing after this can be read.
			return fmt.Errorf("import %s: %w", file, err)
		}
		if err != nil {
			img.Status, img.Problem, img.Action = "damaged", err.Error(), "not imported"
			failed = append(failed, img.name())
		}
		imgs = append(imgs, *img)
	}
	if err := op.report(imgs, true); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d images in %s did not verify and were not imported: %s", len(failed), len(imgs), file, strings.Join(failed, ", "))
	}
	return nil
}

// importOne reads one image (record, meta, rootfs) from tr, verifies it and
// stores it. img is nil when the file cannot be read on (io.EOF at its
// end); err alone says why this image was not stored.
func (op cacheOp) importOne(tr *tar.Reader, kr openpgp.EntityList, allowDowngrade bool) (img *cachedImage, err error) {
	hdr, err := tr.Next()
	if err != nil {
		return nil, err
	}
	key, name, err := exportName(hdr)
	if err != nil {
		return nil, err
	}
	if name != exportRecordName {
		return nil, fmt.Errorf("%s: the image's record must come first", hdr.Name)
	}
	img = &cachedImage{Dist: key.Dist, Release: key.Release, Arch: key.Arch, Variant: key.Variant, key: key}
	recData, err := readExportFile(tr, hdr, maxExportRecord)
	if err != nil {
		return nil, err
	}
	var rec exportRecord
	if err := json.Unmarshal(recData, &rec); err != nil || rec.Format != exportFormat || !compat.ValidBuildID(rec.Build) {
		return nil, fmt.Errorf("%s: not a record this program writes", hdr.Name)
	}
	img.Build = rec.Build
	meta, err := nextExportFile(tr, key, fetch.MetaFile, maxExportMeta)
	if err != nil {
		return nil, err
	}
	hdr, err = tr.Next()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", img.name(), err)
	}
	if k, n, err := exportName(hdr); err != nil || k != key || n != fetch.RootfsFile {
		return nil, fmt.Errorf("%s: want %s next", hdr.Name, path.Join(img.name(), fetch.RootfsFile))
	}
	if hdr.Size > fetch.DefaultMaxRootfsSize {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", hdr.Name, hdr.Size, int64(fetch.DefaultMaxRootfsSize))
	}
	// From here the file can be read on whatever this image holds: the
	// rootfs is read whole into the stage before anything is decided.
	ev := fetch.Evidence{SHA256SUMS: rec.SHA256SUMS, SHA256SUMSSig: rec.SHA256SUMSSig, Signatures: rec.Signatures}
	err = op.commitImport(key, rec, ev, kr, meta, tr, allowDowngrade)
	if err == nil {
		img.Status, img.Action = "verified", "imported"
	}
	return img, err
}

// commitImport verifies one imported image under its entry's lock and
// commits it.
func (op cacheOp) commitImport(key cache.Key, rec exportRecord, ev fetch.Evidence, kr openpgp.EntityList, meta []byte, rootfs io.Reader, allowDowngrade bool) (err error) {
	unlock, err := op.store.Lock(op.ctx, key)
	if err != nil {
		io.Copy(io.Discard, rootfs)
		return err
	}
	defer unlock()
	st, err := op.store.Stage(key)
	if err != nil {
		io.Copy(io.Discard, rootfs)
		return err
	}
	defer func() {
		if err != nil {
			st.Cleanup()
		}
	}()
	rootfsSum, err := writeStaged(st.Dir, fetch.RootfsFile, rootfs)
	if err != nil {
		return err
	}
	if _, err := writeStaged(st.Dir, fetch.MetaFile, strings.NewReader(string(meta))); err != nil {
		return err
	}
	metaSum := sha256.Sum256(meta)
	if err := recheckFile(kr, ev, fetch.MetaFile, hex.EncodeToString(metaSum[:]), filepath.Join(st.Dir, fetch.MetaFile)); err != nil {
		return err
	}
	if err := recheckFile(kr, ev, fetch.RootfsFile, rootfsSum, filepath.Join(st.Dir, fetch.RootfsFile)); err != nil {
		return err
	}
	signed, err := fetch.EvidenceTime(kr, ev)
	if err != nil {
		return err
	}
	if old, err := op.store.Lookup(key); err == nil && old != nil && !allowDowngrade {
		if err := cache.CheckFresh(cache.Seen{Build: old.BuildID}, rec.Build, time.Time{}, false); err != nil {
			return fmt.Errorf("%w: the cache holds it (--allow-downgrade replaces it)", err)
		}
	}
	st.Fetched = signed
	if _, err := st.CommitWith(rec.Build, op.mode, cache.Trust{Verified: true, Keys: fingerprints(kr),
		SHA256SUMS: ev.SHA256SUMS, SHA256SUMSSig: ev.SHA256SUMSSig, Signatures: ev.Signatures}); err != nil {
		return err
	}
	st.Abort()
	return nil
}

// writeStaged copies r to dir/name and returns its SHA256.
func writeStaged(dir, name string, r io.Reader) (string, error) {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		os.Remove(filepath.Join(dir, name))
		f, err = os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	if err != nil {
		return "", err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return hex.EncodeToString(h.Sum(nil)), err
}

// recheckFile verifies the staged file p (of SHA256 sum) by the evidence.
func recheckFile(kr openpgp.EntityList, ev fetch.Evidence, name, sum, p string) error {
	check, err := fetch.Recheck(kr, ev, name, sum)
	if err != nil || check == nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(check, f); err != nil {
		return err
	}
	return check.Finish()
}

// nextExportFile reads the next file of tr, which must be key's name.
func nextExportFile(tr *tar.Reader, key cache.Key, name string, limit int64) ([]byte, error) {
	hdr, err := tr.Next()
	if err != nil {
		return nil, err
	}
	if k, n, err := exportName(hdr); err != nil || k != key || n != name {
		return nil, fmt.Errorf("%s: want %s/%s/%s/%s/%s next", hdr.Name, key.Dist, key.Release, key.Arch, key.Variant, name)
	}
	return readExportFile(tr, hdr, limit)
}

// readExportFile reads the file hdr of at most limit bytes.
func readExportFile(tr *tar.Reader, hdr *tar.Header, limit int64) ([]byte, error) {
	if hdr.Size > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", hdr.Name, hdr.Size, limit)
	}
	return io.ReadAll(io.LimitReader(tr, limit))
}

// exportName splits the name of a file of an export: a regular file
// DIST/RELEASE/ARCH/VARIANT/NAME whose key is a valid cache key.
func exportName(hdr *tar.Header) (cache.Key, string, error) {
	parts := strings.Split(hdr.Name, "/")
	if hdr.Typeflag != tar.TypeReg || len(parts) != 5 {
		return cache.Key{}, "", fmt.Errorf("%q is not a file of an export", hdr.Name)
	}
	k := cache.Key{Dist: parts[0], Release: parts[1], Arch: parts[2], Variant: parts[3]}
	if err := k.Check(); err != nil {
		return cache.Key{}, "", fmt.Errorf("%q: %w", hdr.Name, err)
	}
	return k, parts[4], nil
}
