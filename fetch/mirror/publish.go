package mirror

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
)

// A client reads an index and its signature with two requests, and no
// order of two renames can make two requests agree: one made before the
// switch and one after get an old file and a new one. What the mirror
// can do, it does: the files are renamed back to back, once every build
// they name is in place, the signature right after its file (a stale
// signature is removed before its file changes, so that the window shows
// an unsigned file, which the streams' readers accept as such, rather than
// a mismatch); and nothing changes them again within a run. lxc-download
// reads a pair that does not match once more (fetch), and so never sees
// one. See the README for the argument.

// pubFile is a file to publish below the destination; data nil removes it.
type pubFile struct {
	rel  string
	data []byte
}

// pair appends a file and its signature in the order that keeps the
// window between the two renames harmless.
func pair(files []pubFile, rel string, data []byte, sigRel string, sig []byte) []pubFile {
	if sig == nil {
		return append(files, pubFile{sigRel, nil}, pubFile{rel, data})
	}
	return append(files, pubFile{rel, data}, pubFile{sigRel, sig})
}

// metadata is what to publish after the builds: the streams, then the
// indexes, each with its signature. With the source's signatures, it is
// the source's files as they are, and only when every build they name for
// the mirrored images is present; otherwise nothing is, and heldBack says
// why. With SignKey it is the mirror's own, naming only what is present.
func (m *run) metadata(src *source, builds []*build, present func(rel string) bool) (files []pubFile, heldBack string, err error) {
	if m.o.SignKey != nil {
		files, err = m.ownMetadata(src, builds, present)
		return files, "", err
	}
	var missing []string
	for _, b := range builds {
		if b.rel == "" || b.status == StatusFailed || !present(b.rel) {
			missing = append(missing, imageName(b.image)+" "+b.entry.Build)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Sprintf("the source's indexes and streams name %s that %s not here (%s); those published before stay until %s",
			count(len(missing), "build"), map[bool]string{true: "is", false: "are"}[len(missing) == 1], strings.Join(missing, ", "),
			map[bool]string{true: "it is", false: "they are"}[len(missing) == 1]), nil
	}
	if st := src.streams; st != nil {
		files = m.streamsFiles(src, st.IndexData, st.IndexSig, st.ImagesData, st.ImagesSig)
	} else {
		files = m.streamsFiles(src, nil, nil, nil, nil)
	}
	for _, ix := range src.indexes {
		files = pair(files, ix.rel, ix.file.Data, ix.rel+".asc", ix.file.Sig)
	}
	return append(files, m.staleIndexes(src)...), "", nil
}

// streamsFiles are the files of the streams: the catalogue before the
// index that names it. Without streams at the source, those published
// before are removed, the index first.
func (m *run) streamsFiles(src *source, index, indexSig, images, imagesSig []byte) []pubFile {
	var files []pubFile
	if src.streams == nil {
		old := m.publishedCatalogue()
		files = append(files, pubFile{StreamsIndexPath, nil}, pubFile{StreamsIndexPath + compat.StreamsSignatureSuffix, nil})
		if old != "" {
			files = append(files, pubFile{old, nil}, pubFile{old + compat.StreamsSignatureSuffix, nil})
		}
		return files
	}
	files = pair(files, src.imagesPath, images, src.imagesPath+compat.StreamsSignatureSuffix, imagesSig)
	return pair(files, StreamsIndexPath, index, StreamsIndexPath+compat.StreamsSignatureSuffix, indexSig)
}

// staleIndexes removes the index variants the source no longer publishes.
func (m *run) staleIndexes(src *source) []pubFile {
	have := map[string]bool{}
	for _, ix := range src.indexes {
		have[ix.rel] = true
	}
	var files []pubFile
	for _, rel := range IndexPaths() {
		if !have[rel] {
			files = append(files, pubFile{rel, nil}, pubFile{rel + ".asc", nil})
		}
	}
	return files
}

// publishedCatalogue is the path of the catalogue the published streams
// index names, "" if none.
func (m *run) publishedCatalogue() string {
	data, err := os.ReadFile(filepath.Join(m.dest, StreamsIndexPath))
	if err != nil {
		return ""
	}
	ix, err := compat.ParseStreamsIndex(data)
	if err != nil {
		return ""
	}
	rel, err := cleanRel(ix.ImagesPath)
	if err != nil {
		return ""
	}
	return rel
}

// ownMetadata are the indexes and streams that list the mirrored builds
// only, signed with SignKey. An image whose new build failed keeps the
// line of the build published before, while it is present. A file whose
// content is what is published already is left alone, signature and all.
func (m *run) ownMetadata(src *source, builds []*build, present func(rel string) bool) ([]pubFile, error) {
	mirrored := map[compat.Query]bool{}
	listed := map[string]bool{}
	for _, b := range builds {
		mirrored[b.image] = true
		if b.rel == "" || !present(b.rel) {
			continue
		}
		key := compat.ProductKey(b.image.Dist, b.image.Release, b.image.Arch, b.image.Variant) + " " + b.entry.Build
		listed[key+" "] = true
		bs := m.st.get(b.rel)
		for _, e := range b.extras {
			if bs != nil && bs.Files[e.name] == e.sha256 {
				listed[key+" "+e.item] = true
			}
		}
	}
	sign := func(rel string, data []byte) ([]byte, error) {
		sig, err := fetch.SignDetached(m.o.SignKey, data)
		if err != nil {
			return nil, err
		}
		// What clients will check, checked here first.
		if err := fetch.VerifyDetached(openpgp.EntityList{m.o.SignKey}, filepath.Base(rel), data, sig); err != nil {
			return nil, fmt.Errorf("the signature made for %s does not verify: %w", rel, err)
		}
		return sig, nil
	}
	unchanged := func(rel string, data []byte) bool {
		cur, err := os.ReadFile(filepath.Join(m.dest, rel))
		return err == nil && bytes.Equal(cur, data)
	}
	var files []pubFile
	if src.streams != nil {
		index, images, err := compat.SelectStreams(src.streams.IndexData, src.streams.ImagesData, func(product, build, item, ftype string) bool {
			key := product + " " + build + " "
			return listed[key] && (ftype == compat.RootfsFileType || listed[key+item])
		})
		if err != nil {
			return nil, fmt.Errorf("rewrite the streams: %w", err)
		}
		if !unchanged(src.imagesPath, images) || !unchanged(StreamsIndexPath, index) {
			imagesSig, err := sign(src.imagesPath, images)
			if err != nil {
				return nil, err
			}
			indexSig, err := sign(StreamsIndexPath, index)
			if err != nil {
				return nil, err
			}
			files = m.streamsFiles(src, index, indexSig, images, imagesSig)
		}
	} else {
		files = m.streamsFiles(src, nil, nil, nil, nil)
	}
	for _, ix := range src.indexes {
		old := m.publishedLines(ix.rel)
		var out bytes.Buffer
		for _, line := range indexLines(ix.file.Data) {
			q := compat.Query{Dist: line.entry.Dist, Release: line.entry.Release, Arch: line.entry.Arch, Variant: line.entry.Variant}
			if !mirrored[q] {
				continue
			}
			if rel, err := buildRel(line.entry.Path); err == nil && present(rel) {
				out.WriteString(line.text + "\n")
			} else if prev, ok := old[q]; ok {
				out.WriteString(prev + "\n")
			}
		}
		data := out.Bytes()
		if unchanged(ix.rel, data) {
			continue
		}
		sig, err := sign(ix.rel, data)
		if err != nil {
			return nil, err
		}
		files = pair(files, ix.rel, data, ix.rel+".asc", sig)
	}
	return append(files, m.staleIndexes(src)...), nil
}

// indexLine is one line of an index, as written and as parsed.
type indexLine struct {
	text  string
	entry compat.Entry
}

// indexLines are the lines of an index that name a build (ParseIndex's
// rules, one line at a time), with their text as the source wrote it.
func indexLines(data []byte) []indexLine {
	var out []indexLine
	for _, text := range strings.Split(string(data), "\n") {
		text = strings.TrimSuffix(text, "\r")
		ix, err := compat.ParseIndex([]byte(text))
		if err != nil || len(ix.Entries) != 1 {
			continue
		}
		out = append(out, indexLine{text: text, entry: ix.Entries[0]})
	}
	return out
}

// publishedLines are the lines of the published index rel by image, for
// the images whose build there is present.
func (m *run) publishedLines(rel string) map[compat.Query]string {
	out := map[compat.Query]string{}
	data, err := os.ReadFile(filepath.Join(m.dest, rel))
	if err != nil {
		return out
	}
	for _, line := range indexLines(data) {
		e := line.entry
		q := compat.Query{Dist: e.Dist, Release: e.Release, Arch: e.Arch, Variant: e.Variant}
		if _, ok := out[q]; ok {
			continue
		}
		if brel, err := buildRel(e.Path); err == nil && m.st.Builds[brel] != nil {
			if _, err := os.Stat(filepath.Join(m.dest, brel)); err == nil {
				out[q] = line.text
			}
		}
	}
	return out
}

// changes are the files whose content differs from what is published.
func (m *run) changes(files []pubFile) []pubFile {
	var out []pubFile
	for _, f := range files {
		cur, err := os.ReadFile(filepath.Join(m.dest, f.rel))
		switch {
		case f.data == nil && errors.Is(err, fs.ErrNotExist):
		case f.data != nil && err == nil && bytes.Equal(cur, f.data):
		default:
			out = append(out, f)
		}
	}
	return out
}

// publishFiles replaces the files that changed: every new one is written
// to WorkDir first, then all are renamed into place (or removed) back to
// back, in order.
func (m *run) publishFiles(files []pubFile) ([]string, error) {
	files = m.changes(files)
	tmp := make([]string, len(files))
	defer func() {
		for _, t := range tmp {
			if t != "" {
				os.Remove(t)
			}
		}
	}()
	dirs := map[string]bool{}
	for i, f := range files {
		target := filepath.Join(m.dest, f.rel)
		dirs[filepath.Dir(target)] = true
		if f.data == nil {
			continue
		}
		t, err := os.CreateTemp(filepath.Join(m.work, "tmp"), "publish-*")
		if err != nil {
			return nil, fmt.Errorf("publish %s: %w", f.rel, err)
		}
		tmp[i] = t.Name()
		_, err = t.Write(f.data)
		if err == nil {
			err = t.Chmod(0o644)
		}
		if err == nil {
			err = t.Sync()
		}
		if cerr := t.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("publish %s: %w", f.rel, err)
		}
		if err := mkdirAll(filepath.Dir(target), m.dest); err != nil {
			return nil, fmt.Errorf("publish %s: %w", f.rel, err)
		}
	}
	var done []string
	for i, f := range files {
		target := filepath.Join(m.dest, f.rel)
		if f.data == nil {
			if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return done, fmt.Errorf("remove %s: %w", f.rel, err)
			}
			done = append(done, f.rel+" (removed)")
			continue
		}
		if err := os.Rename(tmp[i], target); err != nil {
			return done, fmt.Errorf("publish %s: %w", f.rel, err)
		}
		tmp[i] = ""
		done = append(done, f.rel)
	}
	for d := range dirs {
		if f, err := os.Open(d); err == nil {
			f.Sync()
			f.Close()
		}
	}
	for _, rel := range done {
		m.log.printf("Published %s", rel)
	}
	return done, nil
}

// publish publishes the streams and indexes for the builds in place, and
// records the signature times of the source's files it published.
func (m *run) publish(src *source, builds []*build) (published []string, heldBack string, err error) {
	present := func(rel string) bool {
		if m.st.Builds[rel] == nil {
			return false
		}
		fi, err := os.Stat(filepath.Join(m.dest, rel))
		return err == nil && fi.IsDir()
	}
	files, heldBack, err := m.metadata(src, builds, present)
	if err != nil || heldBack != "" {
		if heldBack != "" {
			m.errs.printf("NOT PUBLISHED: %s", heldBack)
		}
		return nil, heldBack, err
	}
	published, err = m.publishFiles(files)
	if err != nil {
		return published, "", err
	}
	for _, ix := range src.indexes {
		m.st.SignedAt[ix.rel] = ix.file.SignedAt
	}
	if st := src.streams; st != nil && st.Signed {
		m.st.SignedAt[StreamsIndexPath] = st.SignedAt
	}
	return published, "", nil
}

// checkRollback refuses source files signed before those published from
// it before: a source (or someone in its place) offering an older index
// would hold clients back on old builds.
func (m *run) checkRollback(src *source) error {
	for _, ix := range src.indexes {
		if prev, ok := m.st.SignedAt[ix.rel]; ok && ix.file.SignedAt.Before(prev) {
			return fmt.Errorf("the source's %s was signed %s, before the one published here (%s): refusing to go back (a stale mirror of the source, or a replay)",
				ix.rel, ix.file.SignedAt.UTC().Format(timeLayout), prev.UTC().Format(timeLayout))
		}
	}
	if st := src.streams; st != nil && st.Signed {
		if prev, ok := m.st.SignedAt[StreamsIndexPath]; ok && st.SignedAt.Before(prev) {
			return fmt.Errorf("the source's streams were signed %s, before those published here (%s): refusing to go back",
				st.SignedAt.UTC().Format(timeLayout), prev.UTC().Format(timeLayout))
		}
	}
	return nil
}

const timeLayout = "2006-01-02 15:04:05 MST"

// printable is s as one line without control characters.
func printable(s string) string { return compat.PrintableLine(s) }
