package xzpar

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCgroupLimit reads memory limits from control group trees made in a
// temporary directory: v2, where a parent's limit applies to its
// children, and v1.
func TestCgroupLimit(t *testing.T) {
	root := t.TempDir()
	put := func(rel, data string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, p, []byte(data))
	}
	put("memory.max", "max\n")
	put("lxc.payload.c1/memory.max", "536870912\n")
	put("lxc.payload.c1/init.scope/memory.max", "max\n")
	put("user.slice/memory.max", "max\n")
	put("memory/docker/abc/memory.limit_in_bytes", "268435456\n")
	put("memory/memory.limit_in_bytes", "9223372036854771712\n")
	for _, tc := range []struct {
		name, cgroup string
		want         int64
		ok           bool
	}{
		{"v2, a parent's limit", "0::/lxc.payload.c1/init.scope\n", 512 << 20, true},
		{"v2, none", "0::/user.slice\n", 0, false},
		{"v2, the root", "0::/\n", 0, false},
		{"v1", "12:memory:/docker/abc\n11:cpu,cpuacct:/docker/abc\n", 256 << 20, true},
		{"v1, unlimited", "12:memory:/\n", 0, false},
		{"v1, namespaced", "12:memory:/elsewhere\n", 0, false},
		{"hybrid, the lower", "12:memory:/docker/abc\n0::/lxc.payload.c1\n", 256 << 20, true},
	} {
		file := filepath.Join(t.TempDir(), "cgroup")
		writeFile(t, file, []byte(tc.cgroup))
		got, ok := cgroupLimit(file, root)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
	if _, ok := cgroupLimit(filepath.Join(root, "missing"), root); ok {
		t.Error("a limit without a cgroup file")
	}
}

func TestMemAvailable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "meminfo")
	writeFile(t, file, []byte("MemTotal:       24683616 kB\nMemFree:        23178380 kB\nMemAvailable:   24079044 kB\n"))
	if got, ok := memAvailable(file); !ok || got != 24079044<<10 {
		t.Errorf("memAvailable = %d, %v", got, ok)
	}
	writeFile(t, file, []byte("MemTotal:       24683616 kB\n"))
	if _, ok := memAvailable(file); ok {
		t.Error("MemAvailable found where there is none")
	}
	if b := DefaultMemoryBudget(); b <= 0 || b > 256<<20 {
		t.Errorf("DefaultMemoryBudget() = %d", b)
	}
}
