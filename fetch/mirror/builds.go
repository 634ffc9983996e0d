package mirror

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/lxc/lxc-download/fetch"
)

// The files of a build directory that a mirror publishes, besides those
// the source signs them with (see evidenceFiles).
var imageFiles = []string{fetch.MetaFile, fetch.RootfsFile}

// classify finds out which builds are already in place: a directory this
// mirror published, whose rootfs is the one the streams list (a build the
// source made again under the same id comes again). A directory it has no
// record of is verified before it counts (adopt).
func (m *run) classify(builds []*build) {
	for _, b := range builds {
		if b.status == StatusFailed {
			continue
		}
		fi, err := os.Lstat(filepath.Join(m.dest, b.rel))
		if err != nil || !fi.IsDir() {
			b.status = StatusToFetch
			continue
		}
		bs := m.st.Builds[b.rel]
		switch {
		case bs == nil:
			b.adopt, b.status = true, StatusToFetch
		case b.rootfs != nil && bs.Files[fetch.RootfsFile] != b.rootfs.SHA256:
			b.status = StatusToFetch
		case len(m.missingExtras(b, bs)) > 0:
			b.status, b.extrasOnly = StatusToFetch, true
		default:
			b.status = StatusUpToDate
		}
	}
}

// fetchAll downloads the builds that are not in place, Options.Jobs at a
// time, each into a stage of its own, and puts each in place as soon as it
// is verified.
func (m *run) fetchAll(ctx context.Context, builds []*build) {
	var todo []*build
	for _, b := range builds {
		if b.status == StatusToFetch {
			todo = append(todo, b)
		}
	}
	if len(todo) == 0 {
		return
	}
	m.log.printf("Fetching %d of %d builds", len(todo), len(builds))
	jobs := make(chan *build)
	var wg sync.WaitGroup
	for range min(m.o.Jobs, len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range jobs {
				m.fetchOne(ctx, b)
			}
		}()
	}
	for _, b := range todo {
		if ctx.Err() != nil {
			break
		}
		jobs <- b
	}
	close(jobs)
	wg.Wait()
}

// fetchOne gets one build in place, recording why it failed if it does.
func (m *run) fetchOne(ctx context.Context, b *build) {
	name := imageName(b.image) + " " + b.entry.Build
	n, err := m.fetchOneErr(ctx, b, name)
	b.bytes = n
	switch {
	case err != nil && ctx.Err() != nil:
		// Not the build's fault: it is resumed by the next run.
		b.status = StatusToFetch
	case err != nil:
		b.status, b.err = StatusFailed, err
		m.errs.printf("FAILED %s: %s", name, oneLine(err))
	case n == 0 && b.adopt:
		b.status = StatusUpToDate
	default:
		b.status = StatusFetched
		m.log.printf("%s: in place (%s)", name, humanBytes(n))
	}
}

func (m *run) fetchOneErr(ctx context.Context, b *build, name string) (int64, error) {
	c, err := m.buildClient(name)
	if err != nil {
		return 0, err
	}
	if b.adopt {
		bs, err := m.verifyInPlace(b)
		if err == nil {
			m.log.printf("%s: verified the copy in place", name)
			if err := m.st.setBuild(b.rel, bs); err != nil {
				return 0, err
			}
			b.extrasOnly = true
		} else {
			m.log.printf("%s: the copy in place does not verify (%v); fetching it again", name, err)
		}
	}
	if b.extrasOnly {
		return m.completeExtras(ctx, c, b, m.st.get(b.rel))
	}
	return m.fetchBuild(ctx, c, b, name)
}

// buildClient is a client of the source for one build's downloads, whose
// progress lines carry the build's name.
func (m *run) buildClient(name string) (*fetch.Client, error) {
	opts := m.o.Source
	if opts.Progress != nil {
		raw := opts.ProgressTerminal && m.o.Jobs == 1
		opts.Progress = &prefixed{log: m.log, prefix: name + ": ", raw: raw}
		opts.ProgressTerminal = raw
	}
	return fetch.New(opts)
}

// stageDir is the build's private download directory in WorkDir, named
// after its path, so that a run resumes the partial files an earlier one
// left for the same build.
func (m *run) stageDir(rel string) string {
	sum := sha256.Sum256([]byte(rel))
	return filepath.Join(m.work, "stage", hex.EncodeToString(sum[:12]))
}

// fetchBuild downloads and verifies a build in its stage, then renames the
// stage into place. It returns the bytes downloaded.
func (m *run) fetchBuild(ctx context.Context, c *fetch.Client, b *build, name string) (int64, error) {
	stage := m.stageDir(b.rel)
	if err := os.MkdirAll(stage, 0o700); err != nil {
		return 0, fmt.Errorf("stage: %w", err)
	}
	before := stagedBytes(stage)
	m.log.printf("%s: fetching %s", name, b.entry.File(""))
	img, err := c.FetchImage(ctx, b.entry, stage)
	if err != nil {
		return max(stagedBytes(stage)-before, 0), err
	}
	got := img.Rootfs.Size + img.Meta.Size - before
	if b.rootfs != nil && (img.Rootfs.SHA256 != b.rootfs.SHA256 || img.Rootfs.Size != b.rootfs.Size) {
		// SHA256SUMS is signed and says otherwise: the streams are
		// wrong, and would send Incus a file that fails its check.
		os.RemoveAll(stage)
		return got, fmt.Errorf("the streams list %s with SHA256 %s and %d bytes, the signed SHA256SUMS vouches for %s and %d bytes",
			fetch.RootfsFile, b.rootfs.SHA256, b.rootfs.Size, img.Rootfs.SHA256, img.Rootfs.Size)
	}
	ev := img.Evidence
	evidence := map[string][]byte{}
	if len(ev.SHA256SUMS) > 0 {
		evidence["SHA256SUMS"], evidence["SHA256SUMS.asc"] = ev.SHA256SUMS, ev.SHA256SUMSSig
	}
	for file, sig := range ev.Signatures {
		evidence[file+".asc"] = sig
	}
	for file, data := range evidence {
		if err := os.WriteFile(filepath.Join(stage, file), data, 0o644); err != nil {
			return got, fmt.Errorf("stage: %w", err)
		}
	}
	bs := &buildState{Files: map[string]string{fetch.MetaFile: img.Meta.SHA256, fetch.RootfsFile: img.Rootfs.SHA256}, Published: m.o.Now()}
	for file, data := range evidence {
		sum := sha256.Sum256(data)
		bs.Files[file] = hex.EncodeToString(sum[:])
	}
	if len(b.extras) > 0 {
		var sums map[string]string
		if len(ev.SHA256SUMS) > 0 {
			if sums, err = fetch.ParseSHA256SUMS(ev.SHA256SUMS); err != nil {
				return got, err
			}
		}
		n, err := m.fetchExtras(ctx, c, b.extras, stage, sums, bs)
		got += n
		if err != nil {
			return got, err
		}
	}
	if err := m.putInPlace(stage, b.rel, bs); err != nil {
		return got, err
	}
	return got, nil
}

// stagedBytes is the size of what a stage holds: resumed downloads do not
// count as downloaded by this run.
func stagedBytes(stage string) int64 {
	var n int64
	for _, f := range imageFiles {
		for _, p := range []string{f, f + ".partial"} {
			if fi, err := os.Stat(filepath.Join(stage, p)); err == nil {
				n += fi.Size()
			}
		}
	}
	return n
}

// putInPlace makes a verified stage readable and renames it to the build's
// place, first in the record (so that a run killed just after still knows
// the directory), then on disk. A directory already there (the source made
// the build again, or a copy that did not verify) is exchanged with the
// stage in one rename, and removed.
func (m *run) putInPlace(stage, rel string, bs *buildState) error {
	target := filepath.Join(m.dest, rel)
	ents, err := os.ReadDir(stage)
	if err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	for _, e := range ents {
		if bs.Files[e.Name()] == "" {
			// A partial download of a file this build does not have
			// (any more): never published.
			if err := os.RemoveAll(filepath.Join(stage, e.Name())); err != nil {
				return fmt.Errorf("stage: %w", err)
			}
			continue
		}
		if !e.Type().IsRegular() {
			return fmt.Errorf("stage: unexpected %s", e.Name())
		}
		if err := os.Chmod(filepath.Join(stage, e.Name()), 0o644); err != nil {
			return fmt.Errorf("stage: %w", err)
		}
	}
	if err := os.Chmod(stage, 0o755); err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	if err := mkdirAll(filepath.Dir(target), m.dest); err != nil {
		return fmt.Errorf("publish %s: %w", rel, err)
	}
	if err := m.st.setBuild(rel, bs); err != nil {
		return err
	}
	err = unix.Renameat2(unix.AT_FDCWD, stage, unix.AT_FDCWD, target, unix.RENAME_EXCHANGE)
	switch {
	case err == nil:
		// The old copy is in the stage's place now.
		trash := filepath.Join(m.work, "trash", filepath.Base(stage))
		if err := os.Rename(stage, trash); err == nil {
			os.RemoveAll(trash)
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS):
		// A filesystem without exchange: the old copy goes first.
		trash := filepath.Join(m.work, "trash", filepath.Base(stage))
		if err := os.Rename(target, trash); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("publish %s: %w", rel, err)
		}
		defer os.RemoveAll(trash)
	default:
		return fmt.Errorf("publish %s: %w", rel, err)
	}
	if err := os.Rename(stage, target); err != nil {
		return fmt.Errorf("publish %s: %w", rel, err)
	}
	return nil
}

// verifyInPlace verifies a build directory this mirror has no record of
// (its record was lost, or the tree was copied from elsewhere) as a
// download is verified: its signed SHA256SUMS and the files' own
// signatures, whichever are there, must verify with the keyring and match
// every byte.
func (m *run) verifyInPlace(b *build) (*buildState, error) {
	dir := filepath.Join(m.dest, b.rel)
	kr := m.o.Source.Keyring
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil
		}
		return data
	}
	var sums map[string]string
	if data, sig := read("SHA256SUMS"), read("SHA256SUMS.asc"); data != nil && sig != nil {
		if err := fetch.VerifyDetached(kr, "SHA256SUMS", data, sig); err != nil {
			return nil, err
		}
		var err error
		if sums, err = fetch.ParseSHA256SUMS(data); err != nil {
			return nil, err
		}
	}
	bs := &buildState{Files: map[string]string{}, Published: m.o.Now()}
	for _, name := range imageFiles {
		want := ""
		if sums != nil {
			want, _ = fetch.LookupSHA256(sums, name)
		}
		sig := read(name + ".asc")
		if want == "" && sig == nil {
			return nil, fmt.Errorf("nothing vouches for %s", name)
		}
		check, err := fetch.NewCheck(name, kr, sig, want)
		if err != nil {
			return nil, err
		}
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(check, f)
		f.Close()
		if err != nil {
			return nil, err
		}
		if err := check.Finish(); err != nil {
			return nil, err
		}
		bs.Files[name] = check.SHA256()
	}
	if b.rootfs != nil && bs.Files[fetch.RootfsFile] != b.rootfs.SHA256 {
		return nil, fmt.Errorf("its rootfs is not the one the streams list")
	}
	for _, name := range []string{"SHA256SUMS", "SHA256SUMS.asc", fetch.MetaFile + ".asc", fetch.RootfsFile + ".asc"} {
		if data := read(name); data != nil {
			sum := sha256.Sum256(data)
			bs.Files[name] = hex.EncodeToString(sum[:])
		}
	}
	return bs, nil
}

// cleanStage removes the stages of builds this run did not choose: the
// partial files of a build the source has moved on from.
func (m *run) cleanStage(builds []*build) {
	keep := map[string]bool{}
	for _, b := range builds {
		if b.rel != "" {
			keep[filepath.Base(m.stageDir(b.rel))] = true
		}
	}
	dir := filepath.Join(m.work, "stage")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !keep[e.Name()] {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// oneLine is err's text as one printable line.
func oneLine(err error) string {
	return printable(err.Error())
}
