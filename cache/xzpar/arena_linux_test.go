package xzpar

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// vmFlags returns the VmFlags that /proc/self/smaps lists for the mapping
// that holds addr. (The kernel merges adjacent mappings with the same
// flags, so a buffer need not start one.)
func vmFlags(t *testing.T, addr uintptr) []string {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	in := false
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		// A mapping's first line starts with its range, "start-end".
		var start, end uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &start, &end); n == 2 {
			in = start <= addr && addr < end
			continue
		}
		if flags, ok := strings.CutPrefix(line, "VmFlags:"); ok && in {
			return strings.Fields(flags)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	t.Fatalf("no mapping at %#x in /proc/self/smaps", addr)
	return nil
}

// TestArenaAdvisesHugePages checks that buffers of a huge page or more are
// mapped with MADV_HUGEPAGE (smaps shows it as the flag "hg"), and smaller
// ones are not: decoding into 4 KiB pages takes markedly more CPU.
func TestArenaAdvisesHugePages(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage"); err != nil {
		t.Skip("the kernel has no transparent huge pages")
	}
	var a arena
	defer a.releaseAll()
	for _, tc := range []struct {
		size int
		huge bool
	}{
		{hugePage, true},
		{24 << 20, true},
		{5<<20 + 12345, true},
		{hugePage - 4096, false},
		{minMapped, false},
	} {
		b, err := a.alloc(tc.size)
		if err != nil {
			t.Fatal(err)
		}
		flags := vmFlags(t, uintptr(unsafe.Pointer(&b[0])))
		if got := slices.Contains(flags, "hg"); got != tc.huge {
			t.Errorf("buffer of %d bytes: advised huge pages = %v, want %v (VmFlags %v)", tc.size, got, tc.huge, flags)
		}
	}
}
