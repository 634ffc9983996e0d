package compat

import (
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

func TestServerArch(t *testing.T) {
	for machine, want := range map[string]string{
		"x86_64": "amd64", "amd64": "amd64",
		"aarch64": "arm64", "arm64": "arm64",
		"armv7l": "armhf", "armv8l": "armhf", "armv7": "armhf", "armv7hl": "armhf", "armv7a": "armhf",
		"armv6l": "armel", "armv5tel": "armel", "armv5tejl": "armel", "armv5l": "armel",
		"i386": "i386", "i486": "i386", "i586": "i386", "i686": "i386",
		"ppc64le": "ppc64el", "ppc64": "ppc64", "ppc": "powerpc",
		"s390x":   "s390x",
		"riscv64": "riscv64",
		"mips":    "mips", "mipsel": "mipsel", "mipsle": "mipsel",
		"mips64": "mips64", "mips64el": "mips64el", "mips64le": "mips64el",
		"loongarch64": "loong64", "loong64": "loong64",
	} {
		got, ok := ServerArch(machine)
		if !ok || got != want {
			t.Errorf("ServerArch(%q) = %q, %v; want %q", machine, got, ok, want)
		}
	}
	for _, machine := range []string{"", "arm", "armv4t", "armv8", "aarch64_be", "x86", "i786", "sparc64", "AMD64", "x86_64 ", "riscv32"} {
		if got, ok := ServerArch(machine); ok {
			t.Errorf("ServerArch(%q) = %q, want unknown", machine, got)
		}
	}
}

func TestHostArchByteOrder(t *testing.T) {
	for _, c := range []struct{ machine, goarch, want string }{
		{"mips", "mips", "mips"},
		{"mips", "mipsle", "mipsel"},
		{"mips64", "mips64", "mips64"},
		{"mips64", "mips64le", "mips64el"},
		{"x86_64", "386", "amd64"}, // a 32-bit build on a 64-bit kernel
		{"aarch64", "arm", "arm64"},
		{"armv7l", "arm", "armhf"},
	} {
		got, err := hostArch(c.machine, c.goarch)
		if err != nil || got != c.want {
			t.Errorf("hostArch(%q, %q) = %q, %v; want %q", c.machine, c.goarch, got, err, c.want)
		}
	}
	if _, err := hostArch("pdp11", "amd64"); err == nil || !strings.Contains(err.Error(), `unknown machine architecture "pdp11"`) {
		t.Errorf("unknown machine: %v", err)
	}
}

// TestHostArch checks this host's answer against uname -m, and against the
// architecture this test binary was built for where the two must agree.
func TestHostArch(t *testing.T) {
	got, err := HostArch()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("uname", "-m").Output(); err == nil {
		want, ok := ServerArch(strings.TrimSpace(string(out)))
		if !ok || got != want {
			t.Errorf("HostArch() = %q; uname -m %q gives %q, %v", got, out, want, ok)
		}
	}
	byGOARCH := map[string]string{"amd64": "amd64", "arm64": "arm64", "ppc64le": "ppc64el", "s390x": "s390x", "riscv64": "riscv64", "loong64": "loong64"}
	if want, ok := byGOARCH[runtime.GOARCH]; ok && got != want {
		t.Errorf("HostArch() = %q for a %s build", got, runtime.GOARCH)
	}
}
