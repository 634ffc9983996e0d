package compat

import (
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// serverArches maps uname(2) machine names to the image server's
// architecture names (Debian's), for the names that map as a whole.
var serverArches = map[string]string{
	"x86_64":      "amd64",
	"amd64":       "amd64",
	"aarch64":     "arm64",
	"arm64":       "arm64",
	"armv8l":      "armhf", // 32-bit ARM on a 64-bit kernel (linux32)
	"i386":        "i386",
	"i486":        "i386",
	"i586":        "i386",
	"i686":        "i386",
	"ppc64le":     "ppc64el",
	"ppc64":       "ppc64",
	"ppc":         "powerpc",
	"s390x":       "s390x",
	"riscv64":     "riscv64",
	"mips":        "mips",
	"mipsel":      "mipsel",
	"mipsle":      "mipsel",
	"mips64":      "mips64",
	"mips64el":    "mips64el",
	"mips64le":    "mips64el",
	"loongarch64": "loong64",
	"loong64":     "loong64",
}

// ServerArch returns the image server's name for the architecture uname(2)
// calls machine: x86_64 is amd64, aarch64 arm64, armv7l (and armv7*,
// armv8l) armhf, armv6l and armv5* armel, i386 to i686 i386, ppc64le
// ppc64el, loongarch64 loong64; s390x and riscv64 keep their names. ok is
// false for a machine name it does not know.
//
// The kernel calls MIPS machines "mips" or "mips64" whatever their byte
// order; ServerArch takes those to be big-endian (HostArch knows better).
func ServerArch(machine string) (arch string, ok bool) {
	if a, ok := serverArches[machine]; ok {
		return a, true
	}
	switch {
	case strings.HasPrefix(machine, "armv7"):
		return "armhf", true
	case strings.HasPrefix(machine, "armv6"), strings.HasPrefix(machine, "armv5"):
		return "armel", true
	}
	return "", false
}

// HostArch returns this host's architecture in the image server's naming,
// from uname(2). On MIPS, where the kernel's name does not say the byte
// order, the order this program was built for (and so runs with) decides.
func HostArch() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	return hostArch(unix.ByteSliceToString(u.Machine[:]), runtime.GOARCH)
}

// hostArch is HostArch for a given machine name and GOARCH.
func hostArch(machine, goarch string) (string, error) {
	arch, ok := ServerArch(machine)
	if !ok {
		return "", fmt.Errorf("unknown machine architecture %q", machine)
	}
	switch {
	case arch == "mips" && goarch == "mipsle":
		arch = "mipsel"
	case arch == "mips64" && goarch == "mips64le":
		arch = "mips64el"
	}
	return arch, nil
}
