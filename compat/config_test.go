package compat

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// lxcCreateConfig is what lxc-create writes before running the template,
// with Debian's default.conf.
const lxcCreateConfig = `lxc.net.0.type = veth
lxc.net.0.link = lxcbr0
lxc.net.0.flags = up
lxc.apparmor.profile = generated
lxc.apparmor.allow_nesting = 1
lxc.rootfs.path = dir:/var/lib/lxc/c1/rootfs
`

func TestRewriteConfig(t *testing.T) {
	dist := "lxc.include = LXC_TEMPLATE_CONFIG/debian.common.conf\nlxc.arch = linux64\n"
	got := RewriteConfig([]byte(lxcCreateConfig), []byte(dist), true, "/var/lib/lxc/c1", "c1")
	want := `
# Distribution configuration
lxc.include = LXC_TEMPLATE_CONFIG/debian.common.conf
lxc.arch = linux64

# Container specific configuration
lxc.apparmor.profile = generated
lxc.apparmor.allow_nesting = 1
lxc.rootfs.path = dir:/var/lib/lxc/c1/rootfs
lxc.mount.fstab = /var/lib/lxc/c1/fstab
lxc.uts.name = c1

# Network configuration
lxc.net.0.type = veth
lxc.net.0.link = lxcbr0
lxc.net.0.flags = up
`
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestRewriteConfigDetails(t *testing.T) {
	for _, c := range []struct {
		name, current, dist string
		fstab               bool
		lxcPath, ctName     string
		want                string
	}{
		{"no current config, no fstab: the network header stays", "", "D\n", false, "/p", "n",
			"\n# Distribution configuration\nD\n\n# Container specific configuration\nlxc.uts.name = n\n\n# Network configuration\n"},
		{"lxc-create's comment header is part of the container part",
			"# Template used to create this container: /usr/share/lxc/templates/lxc-download\n# Parameters passed to the template: -d x\n# For additional config options, please look at lxc.container.conf(5)\n\n# Uncomment the following line to support nesting containers:\n#lxc.include = /usr/share/lxc/config/nesting.conf\n", "", false, "/p", "n",
			"# Parameters passed to the template: -d x\n\n# Uncomment the following line to support nesting containers:\n" +
				"\n# Distribution configuration\n" +
				"\n# Container specific configuration\n# Template used to create this container: /usr/share/lxc/templates/lxc-download\n# For additional config options, please look at lxc.container.conf(5)\n#lxc.include = /usr/share/lxc/config/nesting.conf\nlxc.uts.name = n\n" +
				"\n# Network configuration\n"},
		{"dots are any byte", "lxcXnetY0\nlxc_net_0_type\nLXC.net.0\nlxc\nalxcb\nlxc\n lxc.net.\n", "", false, "/p", "n",
			"LXC.net.0\nlxc\nlxc\n\n# Distribution configuration\n\n# Container specific configuration\nalxcb\n lxc.net.\nlxc.uts.name = n\n\n# Network configuration\nlxcXnetY0\nlxc_net_0_type\n"},
		{"unterminated kept line eats the blank line", "x = 1", "D\n", false, "/p", "n",
			"x = 1\n# Distribution configuration\nD\n\n# Container specific configuration\nlxc.uts.name = n\n\n# Network configuration\n"},
		{"unterminated container line joins the next", "lxc.arch = x86_64", "", true, "/p", "n",
			"\n# Distribution configuration\n\n# Container specific configuration\nlxc.arch = x86_64lxc.mount.fstab = /p/fstab\nlxc.uts.name = n\n\n# Network configuration\n"},
		{"unterminated network line ends the file", "lxc.net.0.type = empty", "", false, "/p", "n",
			"\n# Distribution configuration\n\n# Container specific configuration\nlxc.uts.name = n\n\n# Network configuration\nlxc.net.0.type = empty"},
		{"unterminated dist config eats the blank line", "", "lxc.arch = x86_64", false, "/p", "n",
			"\n# Distribution configuration\nlxc.arch = x86_64\n# Container specific configuration\nlxc.uts.name = n\n\n# Network configuration\n"},
		{"CRs are bytes", "lxc.net.0.type = veth\r\nlxc\r\n\r\n", "D\r\n", false, "/p", "n",
			"\r\n\n# Distribution configuration\nD\r\n\n# Container specific configuration\nlxc\r\nlxc.uts.name = n\n\n# Network configuration\nlxc.net.0.type = veth\r\n"},
		{"values are literal", "", "", true, `/p\n&#`, `a\c#&/b`,
			"\n# Distribution configuration\n\n# Container specific configuration\nlxc.mount.fstab = /p\\n&#/fstab\nlxc.uts.name = a\\c#&/b\n\n# Network configuration\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := RewriteConfig([]byte(c.current), []byte(c.dist), c.fstab, c.lxcPath, c.ctName)
			if string(got) != c.want {
				t.Errorf("got\n%q\nwant\n%q", got, c.want)
			}
		})
	}
	// nil and empty current configs are the same.
	if a, b := RewriteConfig(nil, nil, false, "/p", "n"), RewriteConfig([]byte{}, []byte{}, false, "/p", "n"); !bytes.Equal(a, b) {
		t.Errorf("nil %q != empty %q", a, b)
	}
}

func TestFixMingetty(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"exec /sbin/mingetty $TTY\n", "exec /sbin/mingetty --nohangup $TTY\n"},
		{"mingetty mingetty\nmingetty", "mingetty --nohangup mingetty\nmingetty --nohangup"},
		{"no getty here\n", "no getty here\n"},
		{"mingett\ny\n", "mingett\ny\n"},
		{"agetty\r\nmingetty\r\n", "agetty\r\nmingetty --nohangup\r\n"},
	} {
		if got := FixMingetty([]byte(c.in)); string(got) != c.want {
			t.Errorf("FixMingetty(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestSubstitute(t *testing.T) {
	v := Vars{Name: "c1", Path: "/var/lib/lxc/c1", Rootfs: "/var/lib/lxc/c1/rootfs", TemplateConfig: "/usr/share/lxc/config", HookDir: "/usr/share/lxc/hooks"}
	in := "lxc.include = LXC_TEMPLATE_CONFIG/debian.common.conf\nlxc.hook.x = LXC_HOOK_DIR/h\nLXC_NAME LXC_NAMELXC_PATH LXC_ROOTFS LXC_NAM LXC_ LXC_PATHS\n"
	want := "lxc.include = /usr/share/lxc/config/debian.common.conf\nlxc.hook.x = /usr/share/lxc/hooks/h\nc1 c1/var/lib/lxc/c1 /var/lib/lxc/c1/rootfs LXC_NAM LXC_ /var/lib/lxc/c1S\n"
	if got := v.Substitute([]byte(in)); string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}

	// Values are data: sed's special characters come out as typed, and a
	// value is not substituted again.
	v = Vars{Name: `a#b&c/d\1\n`, Path: "LXC_NAME", Rootfs: "", TemplateConfig: "$HOME", HookDir: "LXC_"}
	in = "LXC_NAME|LXC_PATH|LXC_ROOTFS|LXC_TEMPLATE_CONFIG|LXC_HOOK_DIRNAME|LXC_LXC_ROOTFSNAME\n"
	want = `a#b&c/d\1\n|LXC_NAME||$HOME|LXC_NAME|LXC_NAME` + "\n"
	if got := v.Substitute([]byte(in)); string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// Nothing to do: the same bytes back.
	if got := v.Substitute([]byte("no words\n")); string(got) != "no words\n" {
		t.Errorf("got %q", got)
	}
}

// The differential tests run the commands the shell template runs, under
// sh with LC_ALL=C, over many inputs, and compare the bytes. They run once
// with the system's sed and once with busybox's when it is installed.

// seds returns the sed commands to compare with, as sh words, and whether
// each handles NUL bytes in lines (busybox's regexec stops at them).
func seds(t *testing.T) []sedImpl {
	t.Helper()
	var out []sedImpl
	if p, err := exec.LookPath("sed"); err == nil {
		out = append(out, sedImpl{name: "sed", shell: "sh", sed: p, nul: true})
	}
	if p, err := exec.LookPath("busybox"); err == nil {
		if exec.Command(p, "sed", "--help").Run() == nil || exec.Command(p, "sed", "-n", "p", "/dev/null").Run() == nil {
			out = append(out, sedImpl{name: "busybox sed", shell: p + " sh", sed: p + " sed"})
		}
	}
	if len(out) == 0 {
		t.Skip("neither sed nor busybox is installed: nothing to compare with")
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh to run the shell template's commands with")
	}
	return out
}

type sedImpl struct {
	name  string
	shell string // the shell to run the commands with, as sh words
	sed   string // the sed command, as sh words
	nul   bool   // whether it handles NUL bytes in lines
}

// runCases runs script (which reads $SED and gets the case directories as
// its arguments) once for all the cases.
func runCases(t *testing.T, impl sedImpl, script string, dirs []string) {
	t.Helper()
	args := append(strings.Fields(impl.shell), "-c", script, "sh")
	cmd := exec.Command(args[0], append(args[1:], dirs...)...)
	cmd.Env = []string{"LC_ALL=C", "PATH=/usr/local/bin:/usr/bin:/bin", "SED=" + impl.sed}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", impl.name, err, out)
	}
}

// rewriteScript does, for each case directory, what the shell template does
// to LXC_PATH/config: the sed, echo and cat sequence of SPEC 7.2.
const rewriteScript = `set -eu
for LXC_PATH in "$@"; do
  LXC_NAME="$(cat "$LXC_PATH/name")"
  configfile="$LXC_PATH/dist"
  fstab="$LXC_PATH/fstab"
  $SED -i -e "/lxc.net.0/{w ${LXC_PATH}/config-network" -e "d}" "${LXC_PATH}/config"
  $SED -i -e "/lxc./{w ${LXC_PATH}/config-auto" -e "d}" "${LXC_PATH}/config"
  {
    echo ""
    echo "# Distribution configuration"
    cat "$configfile"
  } >> "${LXC_PATH}/config"
  {
    echo ""
    echo "# Container specific configuration"
    if [ -e "${LXC_PATH}/config-auto" ]; then
      cat "${LXC_PATH}/config-auto"
      rm "${LXC_PATH}/config-auto"
    fi
    if [ -e "${fstab}" ]; then
      echo "lxc.mount.fstab = ${LXC_PATH}/fstab"
    fi
    echo "lxc.uts.name = ${LXC_NAME}"
  } >> "${LXC_PATH}/config"
  if [ -e "${LXC_PATH}/config-network" ]; then
    {
      echo ""
      echo "# Network configuration"
      cat "${LXC_PATH}/config-network"
      rm "${LXC_PATH}/config-network"
    } >> "${LXC_PATH}/config"
  fi
done
`

// configLines are the pieces the generated configs are made of: what
// lxc-create and images write, and near misses of both expressions.
var configLines = []string{
	"lxc.net.0.type = veth", "lxc.net.0.link = lxcbr0", "lxc.net.0.hwaddr = 00:16:3e:xx:xx:xx",
	"lxc.net.1.type = empty", "lxc.net.00", "lxc.net.", "lxc.net.0", " lxc.net.0.flags=up",
	"lxc.rootfs.path = dir:/var/lib/lxc/c1/rootfs", "lxc.apparmor.profile = generated",
	"lxc.include = LXC_TEMPLATE_CONFIG/debian.common.conf", "lxc.arch = linux64",
	"# Template used to create this container: /usr/share/lxc/templates/lxc-download",
	"# Parameters passed to the template: -d debian -r bookworm -a amd64",
	"# For additional config options, please look at lxc.container.conf(5)",
	"#lxc.include = /usr/share/lxc/config/nesting.conf",
	"", " ", "# comment", "lxc", "xlxc", "lxcX", "LXC.net.0", "lxcXnetY0", "lxc_net_0",
	"lxc\rnet\r0", "x\r", "\r", "lxc\r", "lx", "c.net.0", "alxc.net.0b",
	"lxc\xffnet\xfe0", "\xe9t\xe9 lxc", "lxc\tnet\t0", "net.0", "lxc.net.0 lxc.net.0",
}

// nulLines are configLines with NUL bytes, for seds that handle them.
var nulLines = []string{"lxc\x00net\x000", "lxc\x00", "a\x00b", "\x00lxc.net.0"}

func randomText(r *rand.Rand, lines []string, maxLines int) string {
	var b strings.Builder
	n := r.IntN(maxLines + 1)
	for i := 0; i < n; i++ {
		b.WriteString(lines[r.IntN(len(lines))])
		if i < n-1 || r.IntN(4) != 0 {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

type rewriteCase struct {
	current, dist, name string
	fstab               bool
}

func rewriteCases(r *rand.Rand, nul bool) []rewriteCase {
	lines := configLines
	if nul {
		lines = append(append([]string{}, configLines...), nulLines...)
	}
	names := []string{"c1", "my container", "a#b&c/d", "-n", "x'y\"z", "été", "LXC_PATH", ""}
	cases := []rewriteCase{
		{current: lxcCreateConfig, dist: "lxc.include = LXC_TEMPLATE_CONFIG/debian.common.conf\nlxc.arch = linux64\n", name: "c1", fstab: true},
		{current: "", dist: "", name: "c1"},
		{current: "\n", dist: "\n", name: "c1", fstab: true},
		{current: "lxc.net.0.type = veth", dist: "x", name: "c1"},
		{current: "lxc.arch = x", dist: "", name: "c1", fstab: true},
		{current: "x", dist: "", name: "c1"},
	}
	n := 60
	if testing.Short() {
		n = 15
	}
	for i := 0; i < n; i++ {
		cases = append(cases, rewriteCase{
			current: randomText(r, lines, 12),
			dist:    randomText(r, lines, 4),
			name:    names[r.IntN(len(names))],
			fstab:   r.IntN(2) == 0,
		})
	}
	return cases
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRewriteConfigMatchesSed(t *testing.T) {
	for _, impl := range seds(t) {
		t.Run(impl.name, func(t *testing.T) {
			cases := rewriteCases(rand.New(rand.NewPCG(1, 2)), impl.nul)
			root := t.TempDir()
			dirs := make([]string, len(cases))
			for i, c := range cases {
				d := filepath.Join(root, fmt.Sprint(i))
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(d, "config"), c.current)
				writeFile(t, filepath.Join(d, "dist"), c.dist)
				writeFile(t, filepath.Join(d, "name"), c.name)
				if c.fstab {
					writeFile(t, filepath.Join(d, "fstab"), "proc proc proc nodev 0 0\n")
				}
				dirs[i] = d
			}
			runCases(t, impl, rewriteScript, dirs)
			for i, c := range cases {
				want, err := os.ReadFile(filepath.Join(dirs[i], "config"))
				if err != nil {
					t.Fatal(err)
				}
				got := RewriteConfig([]byte(c.current), []byte(c.dist), c.fstab, dirs[i], c.name)
				if !bytes.Equal(got, want) {
					t.Errorf("case %d: current %q dist %q fstab %v name %q:\n got %q\nsed %q", i, c.current, c.dist, c.fstab, c.name, got, want)
				}
			}
		})
	}
}

// mingettyLines make up tty.conf files for the FixMingetty comparison.
var mingettyLines = []string{
	"exec /sbin/mingetty $TTY", "respawn", "mingetty mingetty", "mingett", "y", "MINGETTY",
	"# mingetty --nohangup already", "", "\r", "mingetty\r", "xmingettyx", "\xffmingetty",
}

func TestFixMingettyMatchesSed(t *testing.T) {
	// sed -i edits each file on its own, so one sed does all the cases.
	const script = `set -eu
for d in "$@"; do set -- "$@" "$d/tty.conf"; shift; done
$SED -i 's|mingetty|mingetty --nohangup|' "$@"
`
	for _, impl := range seds(t) {
		t.Run(impl.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, 4))
			lines := mingettyLines
			if impl.nul {
				lines = append(append([]string{}, lines...), "a\x00mingetty", "\x00")
			}
			var inputs []string
			for i := 0; i < 150; i++ {
				inputs = append(inputs, randomText(r, lines, 8))
			}
			root := t.TempDir()
			dirs := make([]string, len(inputs))
			for i, in := range inputs {
				dirs[i] = filepath.Join(root, fmt.Sprint(i))
				if err := os.Mkdir(dirs[i], 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dirs[i], "tty.conf"), in)
			}
			runCases(t, impl, script, dirs)
			for i, in := range inputs {
				want, err := os.ReadFile(filepath.Join(dirs[i], "tty.conf"))
				if err != nil {
					t.Fatal(err)
				}
				if got := FixMingetty([]byte(in)); !bytes.Equal(got, want) {
					t.Errorf("FixMingetty(%q) = %q, sed %q", in, got, want)
				}
			}
		})
	}
}

// TestSubstituteMatchesSed compares Substitute with the shell template's
// five seds for values without sed's special characters, where the two must
// agree.
func TestSubstituteMatchesSed(t *testing.T) {
	// sed -i edits each file on its own, so each sed does all the cases;
	// LXC_PATH is the same for all of them.
	const script = `set -eu
LXC_NAME=c1 LXC_PATH=/var/lib/lxc/c1 LXC_ROOTFS=/var/lib/lxc/c1/rootfs
LXC_TEMPLATE_CONFIG=/usr/share/lxc/config LXC_HOOK_DIR=/usr/share/lxc/hooks
for d in "$@"; do set -- "$@" "$d/file"; shift; done
$SED -i "s#LXC_NAME#${LXC_NAME}#g" "$@"
$SED -i "s#LXC_PATH#${LXC_PATH}#g" "$@"
$SED -i "s#LXC_ROOTFS#${LXC_ROOTFS}#g" "$@"
$SED -i "s#LXC_TEMPLATE_CONFIG#${LXC_TEMPLATE_CONFIG}#g" "$@"
$SED -i "s#LXC_HOOK_DIR#${LXC_HOOK_DIR}#g" "$@"
`
	pieces := []string{
		"LXC_NAME", "LXC_PATH", "LXC_ROOTFS", "LXC_TEMPLATE_CONFIG", "LXC_HOOK_DIR", "LXC_", "NAME", "LXC",
		"lxc.include = ", "/x", " ", "\r", "127.0.1.1 ", "\n", "LXC_NAM", "LXC_HOOK_", "\xff",
	}
	for _, impl := range seds(t) {
		t.Run(impl.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(5, 6))
			var inputs []string
			for i := 0; i < 150; i++ {
				var b strings.Builder
				for n := r.IntN(12); n > 0; n-- {
					b.WriteString(pieces[r.IntN(len(pieces))])
				}
				inputs = append(inputs, b.String())
			}
			root := t.TempDir()
			dirs := make([]string, len(inputs))
			for i, in := range inputs {
				dirs[i] = filepath.Join(root, fmt.Sprint(i))
				if err := os.Mkdir(dirs[i], 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dirs[i], "file"), in)
			}
			runCases(t, impl, script, dirs)
			for i, in := range inputs {
				want, err := os.ReadFile(filepath.Join(dirs[i], "file"))
				if err != nil {
					t.Fatal(err)
				}
				v := Vars{Name: "c1", Path: "/var/lib/lxc/c1", Rootfs: "/var/lib/lxc/c1/rootfs", TemplateConfig: "/usr/share/lxc/config", HookDir: "/usr/share/lxc/hooks"}
				if got := v.Substitute([]byte(in)); !bytes.Equal(got, want) {
					t.Errorf("Substitute(%q) = %q, sed %q", in, got, want)
				}
			}
		})
	}
}
