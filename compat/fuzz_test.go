package compat

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
)

// The seed corpora in testdata/fuzz are made by fuzzSeeds; go test checks
// they are current, and -update-seeds rewrites them.
var updateSeeds = flag.Bool("update-seeds", false, "rewrite the fuzz seed corpora in testdata/fuzz")

func FuzzParseIndex(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, err := ParseIndex(data)
		if err != nil {
			if ix != nil || !strings.HasPrefix(err.Error(), "index ") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q with index %v", err, ix)
			}
			return
		}
		if len(ix.Entries) > bytes.Count(data, []byte("\n"))+1 {
			t.Fatalf("%d entries from %d lines", len(ix.Entries), bytes.Count(data, []byte("\n"))+1)
		}
		for _, e := range ix.Entries {
			for _, v := range []string{e.Dist, e.Release, e.Arch, e.Variant, e.Build, e.Path} {
				if hasControl(v) || strings.Contains(v, ";") {
					t.Fatalf("entry %+v has a control character or separator", e)
				}
			}
			if e.Build == "" || e.Path == "" || checkImagePath(e.Path) != nil || strings.Contains(e.Path, "://") {
				t.Fatalf("entry %+v should have been skipped or refused", e)
			}
			for _, seg := range strings.Split(e.File("rootfs.tar.xz"), "/")[1:] {
				if seg == "" || seg == ".." {
					t.Fatalf("File of %q has segment %q", e.Path, seg)
				}
			}
			got, err := ix.Find(Query{e.Dist, e.Release, e.Arch, e.Variant})
			if err != nil || got.Dist != e.Dist || got.Release != e.Release || got.Arch != e.Arch || got.Variant != e.Variant {
				t.Fatalf("Find of %+v: %+v, %v", e, got, err)
			}
		}
		if all := ix.Filter(Query{}); !slices.Equal(all, ix.Entries) {
			t.Fatalf("Filter of nothing is not everything")
		}
		var b bytes.Buffer
		if err := WriteList(&b, ix.Entries); err != nil || bytes.Count(b.Bytes(), []byte("\n")) != len(ix.Entries)+3 {
			t.Fatalf("WriteList: %v, %q", err, b.Bytes())
		}
		b.Reset()
		if err := WriteListJSON(&b, ix.Entries); err != nil {
			t.Fatal(err)
		}
		var back []Entry
		if err := json.Unmarshal(b.Bytes(), &back); err != nil || len(back) != len(ix.Entries) || (len(back) > 0 && !reflect.DeepEqual(back, ix.Entries)) {
			t.Fatalf("JSON round trip: %v: %q", err, b.Bytes())
		}
	})
}

func FuzzReadMetaTarball(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		files, err := ReadMetaTarball(bytes.NewReader(data))
		if err != nil {
			if files != nil || !strings.HasPrefix(err.Error(), "meta tarball: ") {
				t.Fatalf("error %q with files %q", err, files)
			}
			return
		}
		if len(files) > MaxMetaFiles {
			t.Fatalf("%d files", len(files))
		}
		total := 0
		for name, data := range files {
			if !validMetaName(name) || len(data) > MaxMetaFileSize {
				t.Fatalf("file %q of %d bytes", name, len(data))
			}
			total += len(data)
		}
		if total > MaxMetaTotal {
			t.Fatalf("%d bytes in all", total)
		}
		for _, mode := range []Mode{System, User} {
			files.Relevant("config", mode)
			files.Check(mode)
		}
	})
}

// The oracle for FuzzRewriteConfig classifies lines with the regexp
// package, on the bytes seen as Latin-1 so that "." is one byte as in sed
// under LC_ALL=C.
var (
	oracleNetwork = regexp.MustCompile(`lxc.net.0`)
	oracleLXC     = regexp.MustCompile(`lxc.`)
)

func latin1(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

// splitLines splits b after each newline; a last line without one is kept.
func splitLines(b []byte) [][]byte {
	var lines [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n') + 1
		if i == 0 {
			i = len(b)
		}
		lines = append(lines, b[:i])
		b = b[i:]
	}
	return lines
}

func FuzzRewriteConfig(f *testing.F) {
	f.Fuzz(func(t *testing.T, current, dist []byte, fstab bool, lxcPath, name string) {
		out := RewriteConfig(current, dist, fstab, lxcPath, name)

		var kept, container, network []byte
		for _, l := range splitLines(current) {
			s := latin1(bytes.TrimSuffix(l, []byte("\n")))
			switch {
			case oracleNetwork.MatchString(s):
				network = append(network, l...)
			case oracleLXC.MatchString(s):
				container = append(container, l...)
			default:
				kept = append(kept, l...)
			}
		}
		var want bytes.Buffer
		want.Write(kept)
		fmt.Fprintf(&want, "\n# Distribution configuration\n%s", dist)
		fmt.Fprintf(&want, "\n# Container specific configuration\n%s", container)
		if fstab {
			fmt.Fprintf(&want, "lxc.mount.fstab = %s/fstab\n", lxcPath)
		}
		fmt.Fprintf(&want, "lxc.uts.name = %s\n", name)
		fmt.Fprintf(&want, "\n# Network configuration\n%s", network)
		if !bytes.Equal(out, want.Bytes()) {
			t.Fatalf("got\n%q\nwant\n%q", out, want.Bytes())
		}

		// Where no line runs into another, every input line is in the
		// output exactly once, with the lines added.
		if (len(current) > 0 && current[len(current)-1] != '\n') || (len(dist) > 0 && dist[len(dist)-1] != '\n') ||
			strings.Contains(name, "\n") || strings.Contains(lxcPath, "\n") {
			return
		}
		wantLines := slices.Concat(splitLines(current), splitLines(dist), [][]byte{
			[]byte("\n"), []byte("# Distribution configuration\n"),
			[]byte("\n"), []byte("# Container specific configuration\n"),
			[]byte("lxc.uts.name = " + name + "\n"),
			[]byte("\n"), []byte("# Network configuration\n"),
		})
		if fstab {
			wantLines = append(wantLines, []byte("lxc.mount.fstab = "+lxcPath+"/fstab\n"))
		}
		gotLines := splitLines(out)
		slices.SortFunc(wantLines, bytes.Compare)
		slices.SortFunc(gotLines, bytes.Compare)
		if !reflect.DeepEqual(gotLines, wantLines) {
			t.Fatalf("lines differ:\n%q\n%q", gotLines, wantLines)
		}
	})
}

// fuzzSeeds returns the seed corpora: for each fuzz target, its entries by
// file name, each entry the target's arguments.
func fuzzSeeds(t testing.TB) map[string]map[string][]any {
	seeds := map[string]map[string][]any{
		"FuzzParseIndex": {
			"sample":       {[]byte(sampleIndex)},
			"crlf":         {[]byte(strings.ReplaceAll(sampleIndex, "\n", "\r\n"))},
			"blank-skip":   {[]byte("\n \na;b;c;d;;/p/\na;b;c;d;1;\na;b;c;d;1;images//x/")},
			"short":        {[]byte("debian;bookworm;amd64\n")},
			"url":          {[]byte("debian;bookworm;amd64;default;1;https://evil.example/x/\n")},
			"dotdot":       {[]byte("debian;bookworm;amd64;default;1;/images/%2e./../etc/\n")},
			"control-utf8": {[]byte("d\x1b;b\xc2\x9b;c\xff;d;1;/p?#\\/\n")},
		},
		"FuzzReadMetaTarball": {},
		"FuzzRewriteConfig": {
			"lxc-create":   {[]byte(lxcCreateConfig), []byte("lxc.include = LXC_TEMPLATE_CONFIG/debian.common.conf\nlxc.arch = linux64\n"), true, "/var/lib/lxc/c1", "c1"},
			"empty":        {[]byte{}, []byte{}, false, "", ""},
			"unterminated": {[]byte("x = 1\nlxc.arch = x86_64"), []byte("lxc.arch = x86_64"), true, "/p", "n"},
			"comment":      {[]byte("# Template used to create this container: /usr/share/lxc/templates/lxc-download\nlxc.net.0.type = empty"), []byte("D\n"), false, "/p", "a#b&c"},
			"bytes":        {[]byte("lxc\x00net\xff0\r\nlxc\nalxcb\n\r"), []byte("\x00"), false, "/p\n", "n\\n"},
		},
	}
	m := seeds["FuzzReadMetaTarball"]
	small := xz.WriterConfig{DictCap: 4 << 10}
	m["distrobuilder"] = []any{xzCompress(t, makeTar(t,
		tarEntry{name: "config", body: "lxc.include = LXC_TEMPLATE_CONFIG/debian.common.conf\n"},
		tarEntry{name: "config-user", body: "lxc.include = LXC_TEMPLATE_CONFIG/debian.userns.conf\n"},
		tarEntry{name: "config.7", body: "lxc.arch = linux64\n"},
		tarEntry{name: "create-message", body: "Hello\n"},
		tarEntry{name: "excludes-user", body: "./dev/console\n"},
		tarEntry{name: "expiry", body: "1766000000\n"},
		tarEntry{name: "templates", body: "/etc/hostname\n"},
	), small)}
	m["dot-dir"] = []any{xzCompress(t, makeTar(t,
		tarEntry{name: "./", typ: tar.TypeDir},
		tarEntry{name: "./config", body: "C\n"},
		tarEntry{name: "./fstab", body: "proc proc proc nodev 0 0\n", pax: map[string]string{"SCHILY.xattr.user.x": "1"}},
	), small)}
	m["blocks"] = []any{xzCompress(t, makeTar(t, tarEntry{name: "config", body: strings.Repeat("lxc.arch = linux64\n", 30)}), xz.WriterConfig{DictCap: 4 << 10, BlockSize: 300, CheckSum: xz.CRC32})}
	tb := makeTar(t, tarEntry{name: "config", body: "C\n"})
	m["streams"] = []any{slices.Concat(xzCompress(t, tb[:700], small), make([]byte, 4), xzCompress(t, tb[700:], xz.WriterConfig{DictCap: 4 << 10, NoCheckSum: true}))}
	m["symlink"] = []any{xzCompress(t, makeTar(t, tarEntry{name: "config", typ: tar.TypeSymlink, link: "/etc/shadow"}), small)}
	m["subdir"] = []any{xzCompress(t, makeTar(t, tarEntry{name: "etc/", typ: tar.TypeDir}, tarEntry{name: "etc/config", body: "C\n"}), small)}
	d := m["distrobuilder"][0].([]byte)
	m["truncated"] = []any{d[:len(d)-20]}
	return seeds
}

// corpusFile is the text of a seed corpus file in Go's format.
func corpusFile(args []any) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case bool:
			fmt.Fprintf(&b, "bool(%v)\n", v)
		default:
			panic(fmt.Sprintf("no corpus encoding for %T", a))
		}
	}
	return b.Bytes()
}

// TestFuzzSeeds checks that the seed corpora in testdata/fuzz are what
// fuzzSeeds makes, or rewrites them with -update-seeds.
func TestFuzzSeeds(t *testing.T) {
	for target, entries := range fuzzSeeds(t) {
		dir := filepath.Join("testdata", "fuzz", target)
		if *updateSeeds {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for name, args := range entries {
			p := filepath.Join(dir, name)
			want := corpusFile(args)
			if *updateSeeds {
				if err := os.WriteFile(p, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s is not current (%v): run go test ./compat -run TestFuzzSeeds -update-seeds", p, err)
			}
		}
	}
}
