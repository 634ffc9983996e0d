package mirror

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/lxc/lxc-download/compat"
)

// namedBuilds are the build directories that the published files name:
// every index variant, and the streams' catalogue. read gives a published
// file's content (ok false when there is none). A published file that
// does not parse is an error: what it names cannot be known, so nothing
// may be pruned.
func namedBuilds(read func(rel string) ([]byte, bool)) (map[string]bool, error) {
	named := map[string]bool{}
	for _, rel := range IndexPaths() {
		data, ok := read(rel)
		if !ok {
			continue
		}
		ix, err := compat.ParseIndex(data)
		if err != nil {
			return nil, fmt.Errorf("the published %s: %w", rel, err)
		}
		for _, e := range ix.Entries {
			if b, err := buildRel(e.Path); err == nil {
				named[b] = true
			}
		}
	}
	data, ok := read(StreamsIndexPath)
	if !ok {
		return named, nil
	}
	six, err := compat.ParseStreamsIndex(data)
	if err != nil {
		return nil, fmt.Errorf("the published %s: %w", StreamsIndexPath, err)
	}
	catRel, err := cleanRel(six.ImagesPath)
	if err != nil {
		return nil, fmt.Errorf("the published %s: %w", StreamsIndexPath, err)
	}
	if data, ok = read(catRel); !ok {
		return named, nil
	}
	s, err := compat.ParseStreams(data)
	if err != nil {
		return nil, fmt.Errorf("the published %s: %w", catRel, err)
	}
	for _, p := range s.Products {
		for _, b := range p.Builds {
			if b.Dir == "" {
				continue
			}
			if rel, err := buildRel(b.Dir); err == nil {
				named[rel] = true
			}
		}
	}
	return named, nil
}

// readPublished reads a published file of the destination.
func (m *run) readPublished(rel string) ([]byte, bool) {
	data, err := os.ReadFile(filepath.Join(m.dest, rel))
	return data, err == nil
}

// references starts the grace period of every build directory that no
// published file names (nor the builds chosen now), ends it for those
// named again, and with Prune removes the directories whose grace period
// is over.
func (m *run) references(builds []*build) error {
	named, err := namedBuilds(m.readPublished)
	if err != nil {
		return fmt.Errorf("not pruning: %w", err)
	}
	for _, b := range builds {
		if b.rel != "" {
			named[b.rel] = true
		}
	}
	for _, rel := range sortedKeys(m.st.Builds) {
		bs := m.st.Builds[rel]
		if _, err := os.Lstat(filepath.Join(m.dest, rel)); errors.Is(err, fs.ErrNotExist) {
			// Removed by hand: nothing to keep track of.
			delete(m.st.Builds, rel)
			continue
		}
		if named[rel] {
			bs.UnnamedSince = nil
			continue
		}
		if bs.UnnamedSince == nil {
			t := m.now
			bs.UnnamedSince = &t
		}
		after := bs.UnnamedSince.Add(m.o.PruneGrace)
		if !m.o.Prune || m.now.Before(after) {
			m.rep.InGrace = append(m.rep.InGrace, GraceReport{Path: rel, UnnamedSince: *bs.UnnamedSince, PruneAfter: after})
			continue
		}
		if err := m.prune(rel); err != nil {
			return err
		}
		m.rep.Pruned = append(m.rep.Pruned, rel)
		m.log.printf("Pruned %s (named by no published file since %s)", rel, bs.UnnamedSince.UTC().Format(timeLayout))
	}
	return nil
}

// prune removes a build directory: out of the served tree in one rename,
// then from the disk, then the directories above it that are left empty.
func (m *run) prune(rel string) error {
	target := filepath.Join(m.dest, rel)
	trash := filepath.Join(m.work, "trash", filepath.Base(m.stageDir(rel)))
	if err := os.Rename(target, trash); err != nil {
		return fmt.Errorf("prune %s: %w", rel, err)
	}
	delete(m.st.Builds, rel)
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("prune %s: %w", rel, err)
	}
	for dir := filepath.Dir(target); dir != m.dest && len(dir) > len(m.dest); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break
		}
	}
	return nil
}

// dryRun reports what a run would do: the builds it would fetch, the
// files it would publish, the builds it would prune; it writes nothing.
func (m *run) dryRun(src *source, builds []*build) error {
	for _, b := range builds {
		name := imageName(b.image) + " " + b.entry.Build
		switch b.status {
		case StatusToFetch:
			if b.rootfs != nil && !b.extrasOnly {
				b.bytes = b.rootfs.Size
			}
			for _, e := range m.missingExtras(b, m.st.Builds[b.rel]) {
				b.bytes += e.size
			}
			what := "Would fetch"
			if b.adopt {
				what = "Would verify (and fetch again if it does not verify)"
			}
			m.log.printf("%s %s into %s", what, name, b.rel)
		case StatusUpToDate:
			m.log.printf("Up to date: %s", name)
		case StatusFailed:
			m.errs.printf("FAILED %s: %s", name, oneLine(b.err))
		}
	}
	m.report(builds)
	present := func(rel string) bool {
		for _, b := range builds {
			if b.rel == rel {
				return b.status != StatusFailed
			}
		}
		return m.st.Builds[rel] != nil
	}
	files, heldBack, err := m.metadata(src, builds, present)
	if err != nil {
		return err
	}
	m.rep.HeldBack = heldBack
	planned := map[string][]byte{}
	removed := map[string]bool{}
	for _, f := range m.changes(files) {
		if f.data == nil {
			removed[f.rel] = true
			m.rep.Published = append(m.rep.Published, f.rel+" (removed)")
			m.log.printf("Would remove %s", f.rel)
		} else {
			planned[f.rel] = f.data
			m.rep.Published = append(m.rep.Published, f.rel)
			m.log.printf("Would publish %s", f.rel)
		}
	}
	named, err := namedBuilds(func(rel string) ([]byte, bool) {
		if data, ok := planned[rel]; ok {
			return data, true
		}
		if removed[rel] {
			return nil, false
		}
		return m.readPublished(rel)
	})
	if err != nil {
		return fmt.Errorf("not pruning: %w", err)
	}
	for _, b := range builds {
		if b.rel != "" {
			named[b.rel] = true
		}
	}
	for _, rel := range sortedKeys(m.st.Builds) {
		if named[rel] {
			continue
		}
		if _, err := os.Lstat(filepath.Join(m.dest, rel)); err != nil {
			continue
		}
		since := m.now
		if t := m.st.Builds[rel].UnnamedSince; t != nil {
			since = *t
		}
		after := since.Add(m.o.PruneGrace)
		if m.o.Prune && !m.now.Before(after) {
			m.rep.Pruned = append(m.rep.Pruned, rel)
			m.log.printf("Would prune %s", rel)
		} else {
			m.rep.InGrace = append(m.rep.InGrace, GraceReport{Path: rel, UnnamedSince: since, PruneAfter: after})
			m.log.printf("Would keep %s until %s (its grace period)", rel, after.UTC().Format(timeLayout))
		}
	}
	if m.rep.Failed > 0 || heldBack != "" {
		return fmt.Errorf("%w: %d of %d builds cannot be mirrored", ErrFailed, m.rep.Failed, len(builds))
	}
	return nil
}
