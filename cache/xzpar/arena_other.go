//go:build !linux

package xzpar

// arena allocates a reader's large buffers; outside Linux, in the Go heap.
type arena struct{}

// alloc returns a zeroed buffer of n > 0 bytes.
func (a *arena) alloc(n int) ([]byte, error) {
	arenaAllocated.Add(int64(n))
	return make([]byte, n), nil
}

// free releases a buffer from alloc: the garbage collector does.
func (a *arena) free(b []byte) {}

// releaseAll releases every buffer still allocated.
func (a *arena) releaseAll() {}

// buffers returns how many buffers are allocated: none it keeps track of.
func (a *arena) buffers() int { return 0 }
