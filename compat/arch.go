package compat

import (
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// serverArch maps uname(2) machine names to the image server's
// architecture names (Debian's), for the names that map as a whole. A
// switch rather than a map: a map literal is built by the package's init,
// on every start of the program, including the many that never ask.
func serverArch(machine string) (string, bool) {
	switch machine {
	case "x86_64", "amd64":
		return "amd64", true
	case "aarch64", "arm64":
		return "arm64", true
	case "armv8l": // 32-bit ARM on a 64-bit kernel (linux32)
		return "armhf", true
	case "i386", "i486", "i586", "i686":
		return "i386", true
	case "ppc64le":
		return "ppc64el", true
	case "ppc64":
		return "ppc64", true
	case "ppc":
		return "powerpc", true
	case "s390x":
		return "s390x", true
	case "riscv64":
		return "riscv64", true
	case "mips":
		return "mips", true
	case "mipsel", "mipsle":
		return "mipsel", true
	case "mips64":
		return "mips64", true
	case "mips64el", "mips64le":
		return "mips64el", true
	case "loongarch64", "loong64":
		return "loong64", true
	}
	return "", false
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
	if a, ok := serverArch(machine); ok {
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
