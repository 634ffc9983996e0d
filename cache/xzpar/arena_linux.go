package xzpar

import (
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
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
// Buffers of hugePage bytes or more are advised to be backed by transparent
// huge pages (MADV_HUGEPAGE), which most distributions enable only for
// regions that ask. Every buffer is fresh, so with 4 KiB pages each page of
// a block's output is faulted in on its own, thousands per block, at some
// microseconds each (more in a virtual machine); and a block's output is
// its LZMA2 dictionary, whose long-distance matches miss the TLB. With
// 2 MiB pages decoding takes about a tenth less CPU, nearly all of it from
// the faults (BenchmarkDecode, xzpar-stream-workers=2; BenchmarkDecoder of
// internal/lzma2, which reuses one buffer so that only the TLB differs,
// gains about 3%). The advice changes only how memory is backed: a buffer
// is still backed only where written, to within one huge page, and never
// beyond its size, which is what the memory budget counts. Where the
// kernel has no transparent huge pages the advice fails, harmlessly, and
// is not asked again.
//
// An arena's buffers must not be used after releaseAll.
type arena struct {
	mu   sync.Mutex
	live map[*byte][]byte // by first byte, as allocated
}

// minMapped is the size from which buffers are mapped.
const minMapped = 256 << 10

// hugePage is the size of a transparent huge page on amd64 and arm64 (with
// 4 KiB base pages). Where it is larger, buffers below it are advised in
// vain, which costs one system call each.
const hugePage = 2 << 20

// noHugePages is set once MADV_HUGEPAGE has failed: the kernel has no
// transparent huge pages, and asking again for every buffer is wasted.
var noHugePages atomic.Bool

// alloc returns a zeroed buffer of n > 0 bytes.
func (a *arena) alloc(n int) ([]byte, error) {
	var b []byte
	if n < minMapped {
		b = make([]byte, n)
	} else {
		var err error
		b, err = unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
		if err != nil {
			return nil, fmt.Errorf("allocate %d bytes: %w", n, err)
		}
		if n >= hugePage && !noHugePages.Load() {
			if unix.Madvise(b, unix.MADV_HUGEPAGE) != nil {
				noHugePages.Store(true)
			}
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
		unix.Munmap(b)
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
