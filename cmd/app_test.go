package cmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func testIO(env map[string]string) (IO, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return IO{
		Stdin:  strings.NewReader(""),
		Stdout: &out,
		Stderr: &errb,
		Getenv: func(k string) string { return env[k] },
	}, &out, &errb
}

// TestParseForms checks that the forms lxc-create uses (--opt=value, with
// --mapped-uid/--mapped-gid appended space-separated) and the forms people
// type (--opt value, -d value) all give the same options, in any order.
func TestParseForms(t *testing.T) {
	want := Options{
		Dist: "debian", Release: "bookworm", Arch: "amd64", Variant: "cloud", VariantSet: true,
		Server: "example.org:8443", Servers: []string{"example.org:8443"}, Validate: true, Name: "c1", Path: "/var/lib/lxc/c1",
		Rootfs: "/var/lib/lxc/c1/rootfs", MappedUID: 65536, MappedGID: 65537, Format: "text",
	}
	cases := map[string][]string{
		"lxc-create": {"--path=/var/lib/lxc/c1", "--name=c1", "--rootfs=/var/lib/lxc/c1/rootfs",
			"-d", "debian", "-r", "bookworm", "-a", "amd64", "--variant=cloud", "--server=example.org:8443",
			"--mapped-uid", "65536", "--mapped-gid", "65537"},
		"long-space": {"--dist", "debian", "--release", "bookworm", "--arch", "amd64", "--variant", "cloud",
			"--server", "example.org:8443", "--name", "c1", "--path", "/var/lib/lxc/c1",
			"--rootfs", "/var/lib/lxc/c1/rootfs", "--mapped-uid=65536", "--mapped-gid=65537"},
		"shuffled": {"--mapped-gid=65537", "-a=amd64", "--rootfs=/var/lib/lxc/c1/rootfs", "--release=bookworm",
			"--variant", "cloud", "-d", "debian", "--name", "c1", "--server", "example.org:8443",
			"--path=/var/lib/lxc/c1", "--mapped-uid=65536"},
		// GNU getopt's forms, which the shell template read.
		"glued": {"-ddebian", "-rbookworm", "-aamd64", "--variant=cloud", "--server=example.org:8443",
			"--name=c1", "--path=/var/lib/lxc/c1", "--rootfs=/var/lib/lxc/c1/rootfs", "--mapped-uid=65536", "--mapped-gid=65537"},
		"prefixes": {"--dis", "debian", "--rel=bookworm", "--ar", "amd64", "--var", "cloud", "--ser", "example.org:8443",
			"--name", "c1", "--pa", "/var/lib/lxc/c1", "--roo", "/var/lib/lxc/c1/rootfs", "--mapped-u", "65536", "--mapped-g=65537"},
		"separator": {"--path=/var/lib/lxc/c1", "--name=c1", "--rootfs=/var/lib/lxc/c1/rootfs",
			"-d", "debian", "-r", "bookworm", "-a", "amd64", "--variant=cloud", "--server=example.org:8443",
			"--mapped-uid", "65536", "--mapped-gid", "65537", "--"},
		// A repeated option keeps its last value, as with getopt and the
		// shell template's loop.
		"repeated": {"--name=c1", "--path=/var/lib/lxc/c1", "--rootfs=/var/lib/lxc/c1/rootfs",
			"-d", "ubuntu", "-d", "debian", "-r", "bookworm", "-a", "i386", "--arch=amd64", "--variant=cloud",
			"--server=example.org:8443", "--mapped-uid", "1", "--mapped-uid", "65536", "--mapped-gid", "2", "--mapped-gid", "65537"},
		// The flag package read a single dash before a long name.
		"single-dash long": {"-dist", "debian", "-release=bookworm", "-arch", "amd64", "-variant", "cloud",
			"-server", "example.org:8443", "-name", "c1", "-path", "/var/lib/lxc/c1", "-rootfs", "/var/lib/lxc/c1/rootfs",
			"-mapped-uid", "65536", "-mapped-gid=65537"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			s, _, _ := testIO(nil)
			got, req, err := Parse(append([]string{"lxc-download"}, args...), s)
			if err != nil || req != RunRequest {
				t.Fatalf("Parse: request %v, err %v", req, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
	// --server is the one option that gathers its values: the servers
	// are tried in that order.
	s, _, _ := testIO(nil)
	got, _, err := Parse([]string{"lxc-download", "-l", "--server", "a.example", "--ser=b.example/images", "--server", "https://c.example"}, s)
	if err != nil || !reflect.DeepEqual(got.Servers, []string{"a.example", "b.example/images", "https://c.example"}) || got.Server != "a.example" {
		t.Errorf("repeated --server: %q (%q), %v", got.Servers, got.Server, err)
	}
}

func TestParseDefaultsAndEnvironment(t *testing.T) {
	s, _, _ := testIO(map[string]string{"DOWNLOAD_KEYSERVER": "hkps://keys.example", "LXC_CACHE_PATH": "/c", "HOME": "/h"})
	o, _, err := Parse([]string{"lxc-download", "-l", "--mapped-uid", "-1", "--mapped-gid=-1"}, s)
	if err != nil {
		t.Fatal(err)
	}
	if !o.List || o.Variant != "default" || o.VariantSet || o.Server != DefaultServer || !o.Validate ||
		o.MappedUID != -1 || o.MappedGID != -1 || o.Keyserver != "hkps://keys.example" ||
		o.CachePath != "/c" || o.Home != "/h" {
		t.Errorf("unexpected options %+v", o)
	}
	o, _, err = Parse([]string{"lxc-download", "-l", "--keyserver=hkp://other", "--no-validate"}, s)
	if err != nil {
		t.Fatal(err)
	}
	if o.Keyserver != "hkp://other" || o.Validate {
		t.Errorf("--keyserver must override DOWNLOAD_KEYSERVER and --no-validate must clear Validate: %+v", o)
	}
	s, _, _ = testIO(map[string]string{"DOWNLOAD_NAMESERVER": "192.0.2.1, 192.0.2.2:5353"})
	if o, _, err = Parse([]string{"lxc-download", "-l"}, s); err != nil || !reflect.DeepEqual(o.Nameservers, []string{"192.0.2.1", "192.0.2.2:5353"}) {
		t.Errorf("DOWNLOAD_NAMESERVER: %q %v", o.Nameservers, err)
	}
	if o, _, err = Parse([]string{"lxc-download", "-l", "--nameserver=198.51.100.7"}, s); err != nil || !reflect.DeepEqual(o.Nameservers, []string{"198.51.100.7"}) {
		t.Errorf("--nameserver must override DOWNLOAD_NAMESERVER: %q %v", o.Nameservers, err)
	}
}

func TestParseErrors(t *testing.T) {
	cases := map[string]struct {
		args []string
		msg  string
	}{
		"unknown long":     {[]string{"--bogus"}, "ERROR: unknown option --bogus"},
		"unknown short":    {[]string{"-z"}, "ERROR: unknown option -z"},
		"missing value":    {[]string{"--dist"}, "ERROR: option --dist needs a value"},
		"bad uid":          {[]string{"--mapped-uid", "root"}, `ERROR: --mapped-uid must be a numeric id or -1, not "root"`},
		"positional":       {[]string{"-l", "extra"}, `ERROR: unexpected argument "extra"`},
		"bad format":       {[]string{"-l", "--format=xml"}, `ERROR: --format must be text or json, not "xml"`},
		"empty variant":    {[]string{"-l", "--variant="}, "ERROR: --variant must not be empty"},
		"flush and force":  {[]string{"--flush-cache", "--force-cache"}, "ERROR: --flush-cache and --force-cache exclude each other"},
		"verbose quiet":    {[]string{"--verbose", "-q"}, "ERROR: --verbose and --quiet exclude each other"},
		"bad nameserver":   {[]string{"-l", "--nameserver", "dns.example"}, `ERROR: --nameserver: invalid nameserver "dns.example": want an IP address, IP:PORT or [IPv6]:PORT`},
		"no name and path": {[]string{"--name=c1", "-d", "debian", "-r", "x", "-a", "amd64"}, "ERROR: Please pass the name, path, and rootfs for the container"},
		"nothing":          {nil, "ERROR: Please pass the name, path, and rootfs for the container"},
		"ambiguous":        {[]string{"-l", "--ke", "x"}, "ERROR: option --ke is ambiguous; possibilities: --keep-free --keyid --keyring --keyserver"},
		"ambiguous =":      {[]string{"-l", "--r=x"}, "ERROR: option --r is ambiguous; possibilities: --release --rootfs"},
		"unknown prefixed": {[]string{"-l", "--bogus=1"}, "ERROR: unknown option --bogus"},
		"unknown in group": {[]string{"-lz"}, "ERROR: unknown option -z in -lz"},
		"unknown word":     {[]string{"-bogus"}, "ERROR: unknown option -bogus"},
		"glued missing":    {[]string{"-l", "-qd"}, "ERROR: option -d needs a value"},
		"prefix missing":   {[]string{"-l", "--dis"}, "ERROR: option --dis needs a value"},
		"switch value":     {[]string{"--list=maybe"}, "ERROR: option --list takes no value"},
		"short value":      {[]string{"-l=maybe"}, "ERROR: option -l takes no value"},
		"after separator":  {[]string{"-l", "--", "-d", "debian"}, `ERROR: unexpected argument "-d"`},
		"flush alone": {[]string{"--flush-cache"},
			"ERROR: --flush-cache without a container: to remove cached images, run lxc-download cache flush -d DIST [-r RELEASE] [-a ARCH], or cache flush --all"},
		"flush and dist": {[]string{"--flush-cache", "-d", "debian", "-r", "bookworm"},
			"ERROR: --flush-cache without a container: to remove cached images, run lxc-download cache flush -d DIST [-r RELEASE] [-a ARCH], or cache flush --all"},
		"dist alone": {[]string{"-d", "debian"},
			"ERROR: -d debian needs -r RELEASE, and --rootfs DIR to unpack the image there (lxc-create passes its own); to see the releases: lxc-download --list -d debian"},
		"dist and arch": {[]string{"-ddebian", "-a", "amd64"},
			"ERROR: -d debian needs -r RELEASE, and --rootfs DIR to unpack the image there (lxc-create passes its own); to see the releases: lxc-download --list -d debian"},
		"dist and release": {[]string{"-d", "debian", "-r", "bookworm"},
			"ERROR: nowhere to unpack debian bookworm: pass --rootfs DIR, or create a container with lxc-create -t download"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s, out, errb := testIO(nil)
			code := Main(append([]string{"lxc-download"}, c.args...), s)
			if code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			first, _, _ := strings.Cut(errb.String(), "\n")
			if first != c.msg {
				t.Errorf("first stderr line %q, want %q", first, c.msg)
			}
			if strings.Count(errb.String(), "ERROR:") != 1 {
				t.Errorf("want exactly one ERROR line, got:\n%s", errb.String())
			}
			if out.Len() != 0 {
				t.Errorf("nothing belongs on stdout, got %q", out.String())
			}
		})
	}
	// An option error prints the usage after the ERROR line, as the shell
	// template did; an error found later does not.
	s, _, errb := testIO(nil)
	Main([]string{"lxc-download", "--bogus"}, s)
	if !strings.Contains(errb.String(), "LXC container image downloader") {
		t.Errorf("usage missing after an unknown option:\n%s", errb.String())
	}
}

// TestHelp checks that -h and --help print the shell template's usage as
// it was, byte for byte (recorded from the binary before urfave/cli came
// back, in testdata/template-today.json).
func TestHelp(t *testing.T) {
	want := recordedStdout(t, "--help")
	if got := templateUsage(); got != want {
		t.Errorf("usage changed:\n%s\nwant:\n%s", got, want)
	}
	if usageText != templateUsage() {
		t.Errorf("usage_text.go is stale: run make man (go generate ./man) and commit it")
	}
	for _, arg := range []string{"-h", "--help", "--he", "-lh"} {
		s, out, errb := testIO(nil)
		if code := Main([]string{"lxc-download", arg}, s); code != 0 {
			t.Errorf("%s: exit %d", arg, code)
		}
		if out.String() != want || errb.Len() != 0 {
			t.Errorf("%s: stdout %q stderr %q", arg, out.String(), errb.String())
		}
	}
}

// recordedStdout is the recorded standard output of the previous binary
// for one argument.
func recordedStdout(t *testing.T, arg string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/template-today.json")
	if err != nil {
		t.Fatal(err)
	}
	var all []struct {
		Args   []string
		Stdout string
	}
	if err := json.Unmarshal(b, &all); err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		if len(r.Args) == 1 && r.Args[0] == arg {
			return r.Stdout
		}
	}
	t.Fatalf("no recording for %s", arg)
	return ""
}

// TestNormalize checks the canonical form of getopt's argument forms.
func TestNormalize(t *testing.T) {
	sp := specOf(templateFlags())
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-ddebian", "-rbookworm", "-aamd64"}, "--dist=debian --release=bookworm --arch=amd64"},
		{[]string{"-lq"}, "--list --quiet"},
		{[]string{"-lqddebian"}, "--list --quiet --dist=debian"},
		{[]string{"-lqd", "debian"}, "--list --quiet --dist=debian"},
		{[]string{"--dis", "debian", "--rel=bookworm"}, "--dist=debian --release=bookworm"},
		{[]string{"--dist", "-l"}, "--dist=-l"},
		{[]string{"--dist="}, "--dist="},
		{[]string{"-d", ""}, "--dist="},
		{[]string{"x", "-l", "y"}, "--list -- x y"},
		{[]string{"-l", "--", "-d", "--", "x"}, "--list -- -d -- x"},
		{[]string{"-"}, "-- -"},
		{[]string{"-dist", "debian", "-a=amd64", "-rootfs=/r"}, "--dist=debian --arch=amd64 --rootfs=/r"},
		{[]string{"--list=false", "-l=true"}, "--list=false --list=true"},
		{[]string{"--name", "c1", "--name", "c2"}, "--name=c1 --name=c2"},
		{[]string{"--h"}, "--help"},
		{[]string{"--li"}, "--list"},
		{[]string{"--vers"}, "--version"},
		{[]string{"--verb"}, "--verbose"},
	}
	for _, c := range cases {
		got, err := normalize(c.args, sp)
		if err != nil || strings.Join(got, " ") != c.want {
			t.Errorf("%q: got %q, %v; want %q", c.args, got, err, c.want)
		}
	}
}

// getopt runs getopt(1) the way the shell template does, with short and
// long as its -o and -l, and returns what it parsed: the options as
// "--NAME=VALUE" or "--NAME" under the names sp gives them, then "--" and
// the other arguments, as normalize writes them; or its error.
func getopt(t *testing.T, short, long string, sp optionSpec, args []string) ([]string, error) {
	t.Helper()
	cmd := exec.Command("getopt", append([]string{"-o", short, "-l", long, "--"}, args...)...)
	// As the template runs it: permuting, getopt's own output format.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "POSIXLY_CORRECT=") && !strings.HasPrefix(kv, "GETOPT_COMPATIBLE=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(errb.String()))
	}
	words := shellWords(t, string(out))
	var got, rest []string
	for i := 0; i < len(words); i++ {
		w := words[i]
		if w == "--" {
			rest = words[i+1:]
			break
		}
		var d optionDef
		if strings.HasPrefix(w, "--") {
			d = sp.long[w[2:]]
		} else {
			d = sp.short[w[1]]
		}
		if d.value {
			i++
			got = append(got, "--"+d.name+"="+words[i])
		} else {
			got = append(got, "--"+d.name)
		}
	}
	if len(rest) > 0 {
		got = append(append(got, "--"), rest...)
	}
	return got, nil
}

// shellWords splits getopt's output: words in single quotes, where a
// quote inside a word ends the quoting, adds an escaped quote and starts
// it again.
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var w strings.Builder
	in, started := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case in && c == '\'':
			in = false
		case in:
			w.WriteByte(c)
		case c == '\'':
			in, started = true, true
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			started = true
		case c == ' ' || c == '\n':
			if started {
				words = append(words, w.String())
				w.Reset()
				started = false
			}
		default:
			w.WriteByte(c)
			started = true
		}
	}
	if in {
		t.Fatalf("unterminated quote in getopt's output %q", s)
	}
	if started {
		words = append(words, w.String())
	}
	return words
}

// getoptSpec is the -o and -l of getopt(1) for sp.
func getoptSpec(sp optionSpec) (short, long string) {
	var shorts []string
	for c, d := range sp.short {
		s := string(c)
		if d.value {
			s += ":"
		}
		shorts = append(shorts, s)
	}
	sort.Strings(shorts)
	var longs []string
	for _, n := range sp.names {
		if sp.long[n].value {
			n += ":"
		}
		longs = append(longs, n)
	}
	return strings.Join(shorts, ""), strings.Join(longs, ",")
}

// getoptForms are argument lists in the forms GNU getopt reads; each is
// parsed alike by getopt and by normalize, or refused by both.
var getoptForms = [][]string{
	{"-ddebian", "-rbookworm", "-aamd64"},
	{"-d", "debian", "-r", "bookworm", "-a", "amd64"},
	{"--dist=debian", "--release", "bookworm", "--arch", "amd64"},
	{"--dis", "debian", "--rel", "bookworm", "--ar=amd64"},
	{"-lq"},
	{"-lqddebian"},
	{"-qld", "debian"},
	{"-l", "--", "x", "-d"},
	{"x", "-l", "y", "--name", "c1"},
	{"--name", "c1", "list"},
	{"--dist", "-l"},
	{"-d", "--"},
	{"--dist=", "-r", ""},
	{"-d", "it's", "-r", "a b"},
	{"--mapped-uid", "1", "--mapped-uid", "2", "--mapped-gid=3"},
	{"--path=/p", "--name=c1", "--rootfs=/p/rootfs", "-d", "debian", "--", "--mapped-uid", "1"},
	{"-"},
	{"--li", "--fl", "--forc"},
	{"--h"},
	// Refused by both.
	{"--bogus"},
	{"-z"},
	{"-lz"},
	{"--ke", "x"},
	{"--r", "x"},
	{"--mapped", "1"},
	{"-d"},
	{"--dist"},
	{"--list=true"},
}

// TestNormalizeGetopt compares normalize with getopt(1) given this
// program's options.
func TestNormalizeGetopt(t *testing.T) {
	needProgram(t, "getopt")
	sp := specOf(templateFlags())
	short, long := getoptSpec(sp)
	for _, args := range getoptForms {
		want, werr := getopt(t, short, long, sp, args)
		got, err := normalize(args, sp)
		if args[0] == "--list=true" {
			// The flag package took a switch's value; getopt does not.
			if err != nil || werr == nil {
				t.Errorf("--list=true: ours %v, getopt %v", err, werr)
			}
			continue
		}
		if (err != nil) != (werr != nil) || (err == nil && strings.Join(got, "\x00") != strings.Join(want, "\x00")) {
			t.Errorf("%q:\n ours   %q, %v\n getopt %q, %v", args, got, err, want, werr)
		}
	}
}

// TestNormalizeShellTemplateGetopt runs the getopt line of LXC's own shell
// template, as it stands in the installed file, on the forms that use only
// the template's options, and compares what it parses with normalize.
func TestNormalizeShellTemplateGetopt(t *testing.T) {
	const shell = "/usr/share/lxc/templates/lxc-download"
	b, err := os.ReadFile(shell)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("LXC's shell template is needed in CI: %v", err)
		}
		t.Skipf("needs LXC's shell template: %v", err)
	}
	needProgram(t, "getopt")
	m := regexp.MustCompile(`getopt -o (\S+) -l ((?:[^ \\]|\\\n)+) -- "\$@"`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no getopt line in %s", shell)
	}
	short, long := string(m[1]), strings.ReplaceAll(string(m[2]), "\\\n", "")
	sp := specOf(templateFlags())
	theirs := map[string]bool{}
	for _, n := range strings.Split(long, ",") {
		theirs[strings.TrimSuffix(n, ":")] = true
	}
	// Prefixes that this program's added options make ambiguous: the
	// shell template reads --fo as --force-cache, this program has
	// --format too; --v (--verbose, --version), --n and --na (--nameserver).
	ambiguousHere := map[string]bool{"--fo": true, "--v": true, "--n": true, "--na": true}
	forms := append(append([][]string(nil), getoptForms...),
		[]string{"--fo"}, []string{"--v", "x"}, []string{"--n", "c1"}, []string{"--na", "c1"})
	tested := 0
form:
	for _, args := range forms {
		for _, a := range args {
			if name, ok := strings.CutPrefix(a, "--"); ok && name != "" {
				name, _, _ = strings.Cut(name, "=")
				if _, known := sp.long[name]; known && !theirs[name] {
					continue form
				}
			} else if len(a) > 1 && a[0] == '-' && a != "--" {
				if _, known := sp.short[a[1]]; known && !strings.Contains(short, a[1:2]) {
					continue form
				}
				if len(a) > 2 && !sp.short[a[1]].value && !strings.Contains(short, a[2:3]) {
					continue form
				}
			}
		}
		want, werr := getopt(t, short, long, sp, args)
		got, err := normalize(args, sp)
		if ambiguousHere[args[0]] {
			if werr != nil || err == nil || !strings.Contains(err.Error(), "is ambiguous") {
				t.Errorf("%q: the shell template reads it (%v), this program must refuse it as ambiguous (%v)", args, werr, err)
			}
			continue
		}
		if args[0] == "--list=true" {
			continue // this program's own difference, tested above
		}
		tested++
		if (err != nil) != (werr != nil) || (err == nil && strings.Join(got, "\x00") != strings.Join(want, "\x00")) {
			t.Errorf("%q:\n ours   %q, %v\n shell template's getopt %q, %v", args, got, err, want, werr)
		}
	}
	if tested < 20 {
		t.Errorf("only %d forms compared", tested)
	}
}

// FuzzNormalize checks that normalize never fails on its own output and
// leaves it as it is, and that the flag set then reads it.
func FuzzNormalize(f *testing.F) {
	for _, args := range getoptForms {
		f.Add(strings.Join(args, "\x00"))
	}
	sp := specOf(templateFlags())
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		canon, err := normalize(args, sp)
		if err != nil {
			return
		}
		again, err := normalize(canon, sp)
		if err != nil || strings.Join(again, "\x00") != strings.Join(canon, "\x00") {
			t.Fatalf("%q -> %q -> %q, %v", args, canon, again, err)
		}
		if _, err := parseFlags(templateFlags(), args, nil); err != nil && !errors.Is(err, errUsage) {
			t.Fatalf("%q: %v", args, err)
		}
	})
}

// needProgram skips the test when prog is not installed, or fails it in CI.
func needProgram(t *testing.T, prog string) {
	t.Helper()
	if _, err := exec.LookPath(prog); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is needed in CI", prog)
		}
		t.Skipf("needs %s", prog)
	}
}

// TestCompletionFlag: the completion protocol's flag is urfave/cli's.
func TestCompletionFlag(t *testing.T) {
	if want := "--" + cli.BashCompletionFlag.Names()[0]; completionFlag != want {
		t.Errorf("completionFlag is %q, urfave/cli's is %q", completionFlag, want)
	}
}
