package mirror

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// stateFile is the mirror's record in WorkDir.
const stateFile = "state.json"

// maxStateSize bounds the record: a few hundred bytes per build.
const maxStateSize = 64 << 20

// state is what the mirror remembers between runs.
type state struct {
	// Format is the record's version.
	Format int `json:"format"`
	// Builds are the build directories this mirror put in place, by
	// their path below the destination.
	Builds map[string]*buildState `json:"builds"`
	// SignedAt are the signature times of the source's files as last
	// published, by path below the destination: a source that offers
	// older ones later is refused.
	SignedAt map[string]time.Time `json:"signed_at"`

	path string
	mu   sync.Mutex
}

// buildState is what the mirror knows of a build directory it published.
type buildState struct {
	// Files are the SHA256 of its files, by name.
	Files map[string]string `json:"files"`
	// Published is when it was put in place.
	Published time.Time `json:"published"`
	// UnnamedSince is when a run first found that no published index or
	// streams file names it; nil while one does.
	UnnamedSince *time.Time `json:"unnamed_since,omitempty"`
}

// readState reads the record in work; a mirror without one has none.
func readState(work string) (*state, error) {
	st := &state{Format: 1, Builds: map[string]*buildState{}, SignedAt: map[string]time.Time{}, path: filepath.Join(work, stateFile)}
	f, err := os.Open(st.path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the mirror's record: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxStateSize+1))
	if err != nil {
		return nil, fmt.Errorf("read the mirror's record: %w", err)
	}
	if len(data) > maxStateSize {
		return nil, fmt.Errorf("read the mirror's record %s: larger than %d MiB", st.path, maxStateSize>>20)
	}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("read the mirror's record %s: %w (remove it to start afresh: the builds in place are then verified again)", st.path, err)
	}
	if st.Format != 1 {
		return nil, fmt.Errorf("read the mirror's record %s: format %d, want 1", st.path, st.Format)
	}
	if st.Builds == nil {
		st.Builds = map[string]*buildState{}
	}
	if st.SignedAt == nil {
		st.SignedAt = map[string]time.Time{}
	}
	return st, nil
}

// save writes the record, replacing the old one whole.
func (st *state) save() error {
	st.mu.Lock()
	data, err := json.MarshalIndent(st, "", "\t")
	st.mu.Unlock()
	if err != nil {
		return fmt.Errorf("write the mirror's record: %w", err)
	}
	if err := writeFileAtomic(st.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write the mirror's record: %w", err)
	}
	return nil
}

// setBuild records a build directory and saves the record.
func (st *state) setBuild(rel string, bs *buildState) error {
	st.mu.Lock()
	st.Builds[rel] = bs
	st.mu.Unlock()
	return st.save()
}

// get is the record of a build directory, nil if none.
func (st *state) get(rel string) *buildState {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.Builds[rel]
}

// openWork makes the destination and the private work directory and takes
// the mirror's lock: one run at a time per destination.
func (m *run) openWork() error {
	if err := mkdirAll(m.dest, m.dest); err != nil {
		return fmt.Errorf("make the destination: %w", err)
	}
	fi, err := os.Lstat(m.work)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(m.work, 0o700); err != nil {
			return fmt.Errorf("make the mirror's work directory: %w", err)
		}
	case err != nil:
		return fmt.Errorf("mirror work directory: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("mirror work directory %s: not a directory", m.work)
	}
	// Private whatever the umask or an earlier hand made of it: the
	// partial files in it are not verified yet.
	if err := os.Chmod(m.work, 0o700); err != nil {
		return fmt.Errorf("mirror work directory: %w", err)
	}
	for _, d := range []string{"stage", "tmp", "trash"} {
		if err := os.Mkdir(filepath.Join(m.work, d), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("mirror work directory: %w", err)
		}
	}
	lockPath := filepath.Join(m.work, "lock")
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("mirror lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("another mirror run is working on %s (it holds %s)", m.dest, lockPath)
		}
		return fmt.Errorf("mirror lock %s: %w", lockPath, err)
	}
	m.unlock = func() { f.Close() }
	// Leftovers of a run that was killed: temporary files never renamed,
	// builds half removed.
	for _, d := range []string{"tmp", "trash"} {
		dir := filepath.Join(m.work, d)
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
	st, err := readState(m.work)
	if err != nil {
		m.unlock()
		return err
	}
	m.st = st
	return nil
}

// mkdirAll makes dir and its missing parents below root with mode 0755
// whatever the umask: a web server running as another user must reach
// what is published.
func mkdirAll(dir, root string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s: not a directory", dir)
		}
		return nil
	}
	if dir != root && strings.HasPrefix(dir, root) {
		if err := mkdirAll(filepath.Dir(dir), root); err != nil {
			return err
		}
	} else if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return os.Chmod(dir, 0o755)
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it over path.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// lineLog writes whole lines to a writer shared by the downloads that run
// at once.
type lineLog struct {
	mu sync.Mutex
	w  io.Writer
}

func newLineLog(w io.Writer) *lineLog {
	if w == nil {
		w = io.Discard
	}
	return &lineLog{w: w}
}

func (l *lineLog) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", args...)
}

// prefixed is a writer for one build's download progress: each line it
// is given goes to the log with the build's name in front, so that the
// lines of downloads running at once can be told apart. A bar (a
// terminal, one download at a time) goes through as it is.
type prefixed struct {
	log    *lineLog
	prefix string
	raw    bool
	buf    []byte
}

func (p *prefixed) Write(b []byte) (int, error) {
	if p.raw {
		p.log.mu.Lock()
		defer p.log.mu.Unlock()
		return p.log.w.Write(b)
	}
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		p.log.printf("%s%s", p.prefix, p.buf[:i])
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

// onceWriter passes each distinct line on once: the clients of the
// downloads that run at once would each say the same warning.
func onceWriter(w io.Writer) io.Writer {
	if w == nil {
		return nil
	}
	return &onceLines{w: w, seen: map[string]bool{}}
}

type onceLines struct {
	mu   sync.Mutex
	w    io.Writer
	seen map[string]bool
}

func (o *onceLines) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.seen[string(b)] {
		return len(b), nil
	}
	o.seen[string(b)] = true
	return o.w.Write(b)
}

// sortedKeys are m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
