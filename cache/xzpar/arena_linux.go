package xzpar

import (
	"fmt"
	"sync"
	"syscall"
)

// arena allocates the large buffers of one reader (block output and
// compressed input, windows, pieces of output) outside the Go heap. Kept in
// the heap, a few such buffers double the process's peak memory: the
// garbage collector lets the heap grow to twice what is live before it
// collects, and these buffers would be most of what is live. Anonymous
// mappings are also only backed by memory once written, so a block claiming
// to be larger than it is costs address space, not memory. Buffers under
// minMapped bytes come from the heap: for them a mapping costs more in
// system calls than it saves.
//
// An arena's buffers must not be used after releaseAll.
type arena struct {
	mu   sync.Mutex
	live map[*byte][]byte // by first byte, as allocated
}

// minMapped is the size from which buffers are mapped.
const minMapped = 256 << 10

// alloc returns a zeroed buffer of n > 0 bytes.
func (a *arena) alloc(n int) ([]byte, error) {
	var b []byte
	if n < minMapped {
		b = make([]byte, n)
	} else {
		var err error
		b, err = syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
		if err != nil {
			return nil, fmt.Errorf("allocate %d bytes: %w", n, err)
		}
	}
	a.mu.Lock()
	if a.live == nil {
		a.live = make(map[*byte][]byte)
	}
	a.live[&b[0]] = b
	a.mu.Unlock()
	arenaAllocated.Add(int64(n))
	notePeak(arenaInUse.Add(int64(n)))
	return b, nil
}

// free releases a buffer from alloc (or does nothing for an empty one).
func (a *arena) free(b []byte) {
	if cap(b) == 0 {
		return
	}
	p := &b[:1][0]
	a.mu.Lock()
	m, ok := a.live[p]
	delete(a.live, p)
	a.mu.Unlock()
	if ok {
		release(m)
	}
}

// release unmaps a buffer of alloc, or leaves one from the heap to the
// garbage collector.
func release(b []byte) {
	arenaInUse.Add(-int64(len(b)))
	if len(b) >= minMapped {
		syscall.Munmap(b)
	}
}

// releaseAll releases every buffer still allocated.
func (a *arena) releaseAll() {
	a.mu.Lock()
	live := a.live
	a.live = nil
	a.mu.Unlock()
	for _, m := range live {
		release(m)
	}
}

// buffers returns how many buffers are allocated.
func (a *arena) buffers() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.live)
}
