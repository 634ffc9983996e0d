package compat

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// hostMap is the identity map of the initial user namespace, padded the way
// the kernel prints it.
const hostMap = "         0          0 4294967295\n"

func TestParseNamespace(t *testing.T) {
	for _, c := range []struct {
		name       string
		self       string
		selfExists bool
		init       string
		initExists bool
		want       Namespace
	}{
		{"no map file", "", false, hostMap, true, NoUserns},
		{"no map file, no init map", "", false, "", false, NoUserns},
		{"host map padded", hostMap, true, hostMap, true, NoUserns},
		{"host map unpadded", "0 0 4294967295\n", true, "", false, NoUserns},
		{"host map with tabs", "\t0\t0  4294967295 \n", true, "", false, NoUserns},
		{"host map with a fourth field", "0 0 4294967295 x\n", true, "", false, NoUserns},
		{"host map on a later line", "5 6 7\n0 0 4294967295\n", true, "", false, NoUserns},
		{"root mapped to itself", "         0          0          1\n", true, hostMap, true, UsernsRoot},
		{"root-like map to another uid, range 1", "         0     100000          1\n", true, hostMap, true, InUserns},
		{"fields 2-3 are 0 1 whatever field 1", "  1000 0 1\n", true, hostMap, true, UsernsRoot},
		{"0 1 as fields 1-2 is not it", "0 1 5\n", true, hostMap, true, InUserns},
		{"only two fields 0 1", "0 1\n", true, hostMap, true, InUserns},
		{"field 3 is 10, not 1", "0 0 10\n", true, hostMap, true, InUserns},
		{"field 2 is 00, not 0", "0 00 1\n", true, hostMap, true, InUserns},
		{"CR is not blank", "0 0 1\r\n", true, hostMap, true, InUserns},
		{"first deciding line wins: root first", "0 0 1\n0 0 4294967295\n", true, "", false, UsernsRoot},
		{"first deciding line wins: host first", "0 0 4294967295\n0 0 1\n", true, "", false, NoUserns},
		{"unprivileged map", "         0     100000      65536\n", true, hostMap, true, InUserns},
		{"empty map (no mapping written yet)", "", true, hostMap, true, InUserns},
		{"empty map, init map missing", "", true, "", false, InUserns},
		{"same map as init", "         0     100000      65536\n", true, "         0     100000      65536\n", true, UsernsRoot},
		{"same map as init but for trailing newlines", "0 100000 65536\n\n", true, "0 100000 65536", true, UsernsRoot},
		{"same map as init, init map missing", "0 100000 65536\n", true, "", false, InUserns},
		{"map differs from init by padding", "0 100000 65536\n", true, "  0 100000 65536\n", true, InUserns},
		{"unterminated last line is not read", "0 0 4294967295", true, hostMap, true, InUserns},
		{"unterminated last line still counts against init", "0 100000 65536", true, "0 100000 65536\n", true, UsernsRoot},
		{"blank lines", "\n\n", true, hostMap, true, InUserns},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := ParseNamespace([]byte(c.self), c.selfExists, []byte(c.init), c.initExists)
			if got != c.want {
				t.Errorf("ParseNamespace(%q, %v, %q, %v) = %v, want %v", c.self, c.selfExists, c.init, c.initExists, got, c.want)
			}
		})
	}
}

func TestNamespaceModes(t *testing.T) {
	for _, c := range []struct {
		n          Namespace
		name       string
		mode, disk Mode
	}{
		{NoUserns, "no", System, System},
		{UsernsRoot, "userns-root", User, System},
		{InUserns, "yes", User, User},
		{Namespace(42), "unknown", User, System},
	} {
		if c.n.String() != c.name || c.n.Mode() != c.mode || c.n.CacheTarget() != c.disk {
			t.Errorf("%d: String %q Mode %q CacheTarget %q, want %q %q %q", int(c.n), c.n.String(), c.n.Mode(), c.n.CacheTarget(), c.name, c.mode, c.disk)
		}
	}
}

// TestNamespaceFromFiles reads real map files: missing ones, unreadable
// ones, and ones that exist.
func TestNamespaceFromFiles(t *testing.T) {
	dir := t.TempDir()
	self := filepath.Join(dir, "self")
	init := filepath.Join(dir, "init")
	missing := filepath.Join(dir, "missing")
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(self, "0 100000 65536\n")
	write(init, "0 100000 65536\n")
	if got := namespaceFrom(self, init); got != UsernsRoot {
		t.Errorf("same maps: %v", got)
	}
	if got := namespaceFrom(self, missing); got != InUserns {
		t.Errorf("init map missing: %v", got)
	}
	if got := namespaceFrom(missing, init); got != NoUserns {
		t.Errorf("self map missing: %v", got)
	}
	// A directory exists but cannot be read as a file: present and empty.
	if got := namespaceFrom(dir, missing); got != InUserns {
		t.Errorf("unreadable self map: %v", got)
	}
	if got := namespaceFrom(dir, dir); got != UsernsRoot {
		t.Errorf("both unreadable, so both empty and equal: %v", got)
	}
}

// TestCurrentNamespace runs this test binary in real user namespaces made
// by unshare(1) and checks what CurrentNamespace says there.
func TestCurrentNamespace(t *testing.T) {
	if os.Getenv("COMPAT_NAMESPACE_CHILD") == "1" {
		os.Stdout.WriteString("namespace=" + CurrentNamespace().String() + "\n")
		return
	}
	if os.Geteuid() == 0 {
		// The host (or a container that shares its namespace) reads as
		// the initial namespace or userns-root, never as unprivileged.
		if got := CurrentNamespace(); got == InUserns {
			self, _ := os.ReadFile(selfUIDMap)
			t.Errorf("as root here: %v (uid_map %q)", got, self)
		}
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare(1) is not installed: cannot make user namespaces")
	}
	run := func(args ...string) (string, bool) {
		t.Helper()
		cmd := exec.Command(unshare, append(args, os.Args[0], "-test.run=^TestCurrentNamespace$")...)
		cmd.Env = append(os.Environ(), "COMPAT_NAMESPACE_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Logf("unshare %v: %v: %s", args, err, out)
			return "", false
		}
		for _, l := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(l, "namespace="); ok {
				return v, true
			}
		}
		t.Fatalf("no namespace line in %q", out)
		return "", false
	}
	// No map written yet: an empty uid_map, unlike init's.
	got, ok := run("--user")
	if !ok {
		t.Skip("cannot create user namespaces here (see log)")
	}
	if got != "yes" {
		t.Errorf("new user namespace without a map: %s, want yes", got)
	}
	want := "yes"
	if os.Geteuid() == 0 {
		want = "userns-root" // "0 0 1": root mapped to itself
	}
	if got, ok := run("--user", "--map-root-user"); !ok || got != want {
		t.Errorf("user namespace with root mapped to uid %d: %s, want %s", os.Geteuid(), got, want)
	}
}
