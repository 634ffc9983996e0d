package xzpar

import (
	"bufio"
	"bytes"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
)

// maxDefaultMemoryBudget is the most DefaultMemoryBudget returns: room for
// eight 24 MiB blocks of xz --threads at the default level with their
// compressed data, or one of xz -9's 192 MiB blocks (three as streams,
// in windows of its 64 MiB dictionary).
const maxDefaultMemoryBudget = 256 << 20

// DefaultMemoryBudget returns the memory budget used when
// Options.MemoryBudget is zero: a quarter of the memory available to this
// process, up to 256 MiB. The memory available is MemAvailable of
// /proc/meminfo, or the memory limit of the process's control group (v2
// memory.max of its group or an ancestor, or v1 memory.limit_in_bytes)
// when that is lower. Where none can be read it is 256 MiB.
func DefaultMemoryBudget() int64 {
	avail := int64(-1)
	if v, ok := memAvailable("/proc/meminfo"); ok {
		avail = v
	}
	if v, ok := cgroupLimit("/proc/self/cgroup", "/sys/fs/cgroup"); ok && (avail < 0 || v < avail) {
		avail = v
	}
	if avail < 0 {
		return maxDefaultMemoryBudget
	}
	return min(avail/4, maxDefaultMemoryBudget)
}

// memAvailable reads MemAvailable, in bytes, from a meminfo file.
func memAvailable(meminfo string) (int64, bool) {
	f, err := os.Open(meminfo)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		v, ok := strings.CutPrefix(s.Text(), "MemAvailable:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil || kb < 0 || kb > 1<<53 {
			return 0, false
		}
		return kb << 10, true
	}
	return 0, false
}

// cgroupLimit returns the lowest memory limit that applies to the control
// group named in the cgroup file (/proc/self/cgroup) under the cgroup
// file system root; ok is false when there is none.
func cgroupLimit(cgroupFile, root string) (limit int64, ok bool) {
	data, err := os.ReadFile(cgroupFile)
	if err != nil {
		return 0, false
	}
	limit = -1
	lower := func(v int64) {
		if limit < 0 || v < limit {
			limit = v
		}
	}
	for _, line := range strings.Split(string(data), "\n") {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") {
			continue
		}
		group := path.Clean(parts[2])
		if parts[0] == "0" && parts[1] == "" {
			// v2: the group's and every ancestor's memory.max.
			// Inside a cgroup namespace the path is relative to
			// the namespace's root, which is mounted at root.
			for dir := group; ; dir = path.Dir(dir) {
				if v, ok := readLimit(path.Join(root, dir, "memory.max")); ok {
					lower(v)
				}
				if dir == "/" {
					break
				}
			}
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c != "memory" {
				continue
			}
			// v1: the group's limit, where the hierarchy is
			// mounted; a namespaced view may only show the root.
			for _, p := range []string{path.Join(root, "memory", group), path.Join(root, "memory")} {
				if v, ok := readLimit(path.Join(p, "memory.limit_in_bytes")); ok {
					lower(v)
					break
				}
			}
		}
	}
	if limit < 0 {
		return 0, false
	}
	return limit, true
}

// readLimit reads a cgroup memory limit file: a number of bytes, or "max"
// (v2) or a number near 2^63 (v1) for none.
func readLimit(file string) (int64, bool) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseInt(string(bytes.TrimSpace(data)), 10, 64)
	if err != nil || v < 0 || v >= 1<<62 {
		return 0, false
	}
	return v, true
}

// memory hands out the large buffers of one reader (blocks' output and
// compressed data, windows, pieces of output) within its budget, and keeps
// buffers given back for reuse: mapping fresh memory for every block
// would cost a page fault per 4 KiB. Buffers are counted against the
// budget by size from when they are allocated until they are unmapped, in
// use or kept, so the budget bounds the memory they take whatever the
// workers do.
//
// Only one goroutine (a reader's dispatcher) calls get, so buffers are
// granted in the order of the blocks and a later block never starves an
// earlier one.
type memory struct {
	arena *arena
	limit int64
	// maxIdle is how many buffers are kept for reuse at most; a reader
	// needs up to three per job in flight.
	maxIdle int

	mu   sync.Mutex
	used int64    // bytes allocated and not yet unmapped
	idle [][]byte // given back, kept for reuse
	// freed is signalled when a buffer is given back.
	freed chan struct{}
}

func newMemory(a *arena, limit int64, maxIdle int) *memory {
	return &memory{arena: a, limit: limit, maxIdle: maxIdle, freed: make(chan struct{}, 1)}
}

// get returns a buffer of n bytes (nil for 0), waiting for other buffers
// to be given back while the budget does not allow it; it fails once quit
// is closed. n must not exceed the limit.
func (m *memory) get(n int64, quit <-chan struct{}) ([]byte, error) {
	for {
		b, ok, err := m.tryGetErr(n)
		if ok || err != nil {
			return b, err
		}
		select {
		case <-m.freed:
		case <-quit:
			return nil, errStopped
		}
	}
}

// tryGet is get without waiting: ok is false while the budget does not
// allow n bytes (or the allocation failed).
func (m *memory) tryGet(n int64) (b []byte, ok bool) {
	b, ok, err := m.tryGetErr(n)
	return b, ok && err == nil
}

// tryGetErr is one attempt of get: ok is false while the budget does not
// allow n bytes; err is the allocation's.
func (m *memory) tryGetErr(n int64) ([]byte, bool, error) {
	if n == 0 {
		return nil, true, nil
	}
	m.mu.Lock()
	// Reuse the smallest kept buffer that fits, unless it is more than
	// twice the size: that would hold budget another buffer may need.
	best := -1
	for i, b := range m.idle {
		if c := int64(cap(b)); c >= n && c <= 2*n && (best < 0 || c < int64(cap(m.idle[best]))) {
			best = i
		}
	}
	if best >= 0 {
		b := m.idle[best]
		m.idle = append(m.idle[:best], m.idle[best+1:]...)
		m.mu.Unlock()
		return b[:n], true, nil
	}
	// Unmap kept buffers, those kept longest first, until a new one fits.
	for m.used+n > m.limit && len(m.idle) > 0 {
		b := m.idle[0]
		m.idle = append(m.idle[:0], m.idle[1:]...)
		m.used -= int64(cap(b))
		m.arena.free(b)
	}
	if m.used+n > m.limit {
		m.mu.Unlock()
		return nil, false, nil
	}
	m.used += n
	m.mu.Unlock()
	b, err := m.arena.alloc(int(n))
	if err != nil {
		m.mu.Lock()
		m.used -= n
		m.mu.Unlock()
		return nil, false, err
	}
	return b, true, nil
}

// put gives back a buffer from get, for reuse.
func (m *memory) put(b []byte) {
	if cap(b) == 0 {
		return
	}
	m.mu.Lock()
	m.idle = append(m.idle, b[:cap(b)])
	if len(m.idle) > m.maxIdle {
		// The one kept longest is the least likely to fit.
		m.used -= int64(cap(m.idle[0]))
		m.arena.free(m.idle[0])
		m.idle = append(m.idle[:0], m.idle[1:]...)
	}
	m.mu.Unlock()
	select {
	case m.freed <- struct{}{}:
	default:
	}
}
