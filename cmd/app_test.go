package cmd

import (
	"bytes"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
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
		Server: "example.org:8443", Validate: true, Name: "c1", Path: "/var/lib/lxc/c1",
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
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			s, _, _ := testIO(nil)
			got, help, err := Parse(append([]string{"lxc-download"}, args...), s)
			if err != nil || help {
				t.Fatalf("Parse: help=%v err=%v", help, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
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

func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help"} {
		s, out, errb := testIO(nil)
		if code := Main([]string{"lxc-download", arg}, s); code != 0 {
			t.Errorf("%s: exit %d", arg, code)
		}
		if out.String() != usageText || errb.Len() != 0 {
			t.Errorf("%s: stdout %q stderr %q", arg, out.String(), errb.String())
		}
	}
}

// TestManPage keeps man/lxc-download.1 and --help in step: every option the
// program accepts is in both, and neither documents one it does not accept.
func TestManPage(t *testing.T) {
	page, err := os.ReadFile("../man/lxc-download.1")
	if err != nil {
		t.Fatal(err)
	}
	var accepted []string
	for _, f := range options {
		for _, n := range append([]string{f.name}, f.aliases...) {
			if len(n) > 1 {
				accepted = append(accepted, "--"+n)
			} else {
				accepted = append(accepted, "-"+n)
			}
		}
	}
	sort.Strings(accepted)
	// troff writes a dash as \-.
	man := strings.ReplaceAll(string(page), `\-`, "-")
	optRe := regexp.MustCompile(`(?:^|[\s|\[(",])(--?[a-z][a-z-]*)`)
	documented := func(text string) map[string]bool {
		m := map[string]bool{}
		for _, g := range optRe.FindAllStringSubmatch(text, -1) {
			m[strings.TrimRight(g[1], "-")] = true
		}
		return m
	}
	inMan, inHelp := documented(man), documented(usageText)
	for _, a := range accepted {
		if !inMan[a] {
			t.Errorf("option %s is accepted but not in the man page", a)
		}
		if !inHelp[a] {
			t.Errorf("option %s is accepted but not in --help", a)
		}
	}
	known := map[string]bool{}
	for _, a := range accepted {
		known[a] = true
	}
	// Options of other programs named in the page (lxc-create's own).
	for _, other := range []string{"-t", "-n"} {
		known[other] = true
	}
	for o := range inMan {
		if !known[o] {
			t.Errorf("the man page documents %s, which the program does not accept", o)
		}
	}
	for o := range inHelp {
		if !known[o] {
			t.Errorf("--help documents %s, which the program does not accept", o)
		}
	}
}
