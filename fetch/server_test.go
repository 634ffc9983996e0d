package fetch_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/lxc/lxc-download/fetch"
)

func TestParseServer(t *testing.T) {
	for in, want := range map[string]fetch.Server{
		"images.linuxcontainers.org":         {Scheme: "https", Host: "images.linuxcontainers.org"},
		"images.linuxcontainers.org/":        {Scheme: "https", Host: "images.linuxcontainers.org"},
		"mirror.example.org/lxc-images":      {Scheme: "https", Host: "mirror.example.org", Prefix: "/lxc-images"},
		"mirror.example.org//lxc//images//":  {Scheme: "https", Host: "mirror.example.org", Prefix: "/lxc/images"},
		"mirror.example.org:8443/a/b":        {Scheme: "https", Host: "mirror.example.org:8443", Prefix: "/a/b"},
		"https://mirror.example.org/lxc/":    {Scheme: "https", Host: "mirror.example.org", Prefix: "/lxc"},
		"HTTPS://mirror.example.org":         {Scheme: "https", Host: "mirror.example.org"},
		"http://mirror.example.org:8080/lxc": {Scheme: "http", Host: "mirror.example.org:8080", Prefix: "/lxc"},
		"[2001:db8::1]:8443/x":               {Scheme: "https", Host: "[2001:db8::1]:8443", Prefix: "/x"},
		"[2001:db8::1]":                      {Scheme: "https", Host: "[2001:db8::1]"},
		"127.0.0.1:65535":                    {Scheme: "https", Host: "127.0.0.1:65535"},
		"mirror.example.org/lxc%20images":    {Scheme: "https", Host: "mirror.example.org", Prefix: "/lxc%20images"},
		"mirror.example.org/~lxc@x":          {Scheme: "https", Host: "mirror.example.org", Prefix: "/~lxc@x"},
	} {
		got, err := fetch.ParseServer(in)
		if err != nil || got != want {
			t.Errorf("ParseServer(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for in, why := range map[string]string{
		"":                                   "empty",
		"https://":                           "no host",
		"http://":                            "no host",
		":443":                               "no host",
		"/lxc-images":                        "no host",
		"https:///lxc":                       "no host",
		"user@mirror.example.org":            "user name",
		"https://user:pw@mirror.example.org": "user name",
		"mirror.example.org?x=1":             "query",
		"mirror.example.org/lxc?":            "query",
		"mirror.example.org#frag":            "fragment",
		"mirror.example.org:99999":           "port",
		"mirror.example.org:0":               "port",
		"mirror.example.org:http":            "port",
		"mirror.example.org:":                "empty port",
		"mirror.example.org:-1":              "port",
		"ftp://mirror.example.org":           "scheme",
		"hkp://mirror.example.org":           "scheme",
		"mirror.example.org/\x1b[31mred":     "control character",
		"mirror.example.org\n":               "control character",
		"mirror.example.org/a\tb":            "control character",
		"mirror.example.org/\u009b":          "control character",
		"mirror example.org":                 "space",
		"mirror.example.org/a b":             "space",
		"mirror.example.org/../etc":          `".." segment`,
		"mirror.example.org/./x":             `"." segment`,
		"mirror.example.org/%2e%2e/x":        "escaped",
		"mirror.example.org/a%2fb":           "escaped",
		"mirror.example.org/%zz":             "invalid",
		"mirror.example.org\\x":              "backslash",
		"::1":                                "",
		"[fe80::1%25eth0]":                   "zone",
	} {
		got, err := fetch.ParseServer(in)
		if err == nil {
			t.Errorf("ParseServer(%q) = %+v, want an error", in, got)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, why) || !strings.HasPrefix(msg, "invalid server ") || strings.ContainsAny(msg, "\n\t\x1b\u009b") {
			t.Errorf("ParseServer(%q): %q, want one line saying %q", in, msg, why)
		}
	}
}

func TestServerURL(t *testing.T) {
	s, err := fetch.ParseServer("http://mirror.example.org:8080/lxc-images/")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.String(); got != "http://mirror.example.org:8080/lxc-images" {
		t.Errorf("String() = %q", got)
	}
	if !s.PlainHTTP() {
		t.Error("not plain HTTP")
	}
	for path, want := range map[string]string{
		"meta/1.0/index-system.7":      "http://mirror.example.org:8080/lxc-images/meta/1.0/index-system.7",
		"/images/d/r/a/v/b//rootfs.xz": "http://mirror.example.org:8080/lxc-images/images/d/r/a/v/b/rootfs.xz",
	} {
		if got := s.URL(path); got != want {
			t.Errorf("URL(%q) = %q, want %q", path, got, want)
		}
	}
}

// FuzzParseServer: what is accepted has a scheme of its own choosing, a
// host, and parses again to itself from its String.
func FuzzParseServer(f *testing.F) {
	for _, s := range []string{"images.linuxcontainers.org", "http://h:80/p", "https://[::1]:8443/a/b/", "h/%41", "u@h", "h:0",
		"file:///srv/lxc", "file://localhost/media/a b/%41", "file:///"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := fetch.ParseServer(in)
		if err != nil {
			return
		}
		switch {
		case s.Scheme == "file":
			dir := s.Dir()
			if s.Host != "" || !strings.HasPrefix(dir, "/") || !s.Local() ||
				slices.Contains(strings.Split(dir, "/"), "..") || slices.Contains(strings.Split(dir, "/"), ".") {
				t.Fatalf("ParseServer(%q) = %+v, directory %q", in, s, dir)
			}
		case (s.Scheme != "https" && s.Scheme != "http") || s.Host == "" || s.Local():
			t.Fatalf("ParseServer(%q) = %+v", in, s)
		}
		if strings.HasSuffix(s.Prefix, "/") {
			t.Fatalf("ParseServer(%q) = %+v", in, s)
		}
		if strings.Contains(s.Host, "@") {
			t.Fatalf("ParseServer(%q) = %+v: a user name", in, s)
		}
		again, err := fetch.ParseServer(s.String())
		if err != nil || again != s {
			t.Fatalf("ParseServer(%q) = %+v, whose String %q gives %+v, %v", in, s, s.String(), again, err)
		}
		for _, c := range s.String() {
			if c < 0x21 || c == 0x7f || c == '?' || c == '#' {
				t.Fatalf("ParseServer(%q) = %+v holds %q", in, s, c)
			}
		}
	})
}
