package cmd_test

// The list command end to end: its filters and formats, from the
// simplestreams and from the index alone; the real binary against
// fetchtest.

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os/exec"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// Builds of the default image: the index names newBuild; the server
// still retains oldBuild.
const (
	newBuild = "20261120_05:24"
	oldBuild = "20261110_05:24"
)

// streamsEnv is an env whose server has debian bookworm (newBuild in the
// index, oldBuild retained), debian trixie, alpine 3.20 (arm64) and an
// Incus-only looking product that the index does not list, with streams
// published as opts says.
func streamsEnv(t *testing.T, opts fetchtest.StreamsOptions) *env {
	t.Helper()
	trixie := fetchtest.NewImage("debian", "trixie", "amd64", "default", "20261121_05:24")
	alpine := fetchtest.NewImage("alpine", "3.20", "arm64", "default", "20261121_13:00")
	e := newEnv(t, fetchtest.DefaultImage(), trixie, alpine)
	if err := e.srv.EnableStreams(opts); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.AddRetainedBuild(oldImage()); err != nil {
		t.Fatal(err)
	}
	// In the streams but not the index: not something a run can create.
	if err := e.srv.AddRetainedBuild(fetchtest.NewImage("fedora", "41", "amd64", "default", "20261119_05:24")); err != nil {
		t.Fatal(err)
	}
	return e
}

// oldImage is the retained older build of the default image.
func oldImage() fetchtest.Image {
	return fetchtest.NewImage("debian", "bookworm", "amd64", "default", oldBuild)
}

// list runs the list command against the env's server.
func (e *env) list(args ...string) result {
	e.t.Helper()
	return e.runRaw(append(append([]string{"list"}, args...), "--server", e.srv.Host, "--keyring", e.srv.KeyFile)...)
}

// listRow is a row of the machine formats, as read back.
type listRow struct {
	Name         string   `json:"name"`
	Dist         string   `json:"dist"`
	Release      string   `json:"release"`
	Arch         string   `json:"arch"`
	Variant      string   `json:"variant"`
	Build        string   `json:"build"`
	BuildDate    *string  `json:"build_date"`
	Size         *int64   `json:"size"`
	SHA256       *string  `json:"sha256"`
	Path         string   `json:"path"`
	OS           *string  `json:"os"`
	ReleaseTitle *string  `json:"release_title"`
	Aliases      []string `json:"aliases"`
}

func (e *env) listJSON(args ...string) []listRow {
	e.t.Helper()
	r := e.list(append([]string{"--format", "json"}, args...)...)
	if r.code != 0 {
		e.t.Fatalf("list %q:\n%s", args, r)
	}
	var rows []listRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		e.t.Fatalf("list %q: %v\n%s", args, err, r)
	}
	return rows
}

func names(rows []listRow) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.Name+"@"+r.Build)
	}
	return out
}

// TestListFilters: words match a substring of the name or of an alias;
// KEY=REGEXP is anchored unless it says otherwise; every filter must hold;
// a bad expression or key is one clear error. Only the images of the
// index are listed, newest build first, every build with --all-builds.
func TestListFilters(t *testing.T) {
	t.Parallel()
	e := streamsEnv(t, fetchtest.StreamsOptions{})
	bookworm := "debian/bookworm/amd64/default@" + newBuild
	trixie := "debian/trixie/amd64/default@20261121_05:24"
	alpine := "alpine/3.20/arm64/default@20261121_13:00"
	for _, c := range []struct {
		args []string
		want []string
	}{
		{nil, []string{alpine, bookworm, trixie}},
		{[]string{"debian"}, []string{bookworm, trixie}},
		{[]string{"ookwor"}, []string{bookworm}},
		// An alias, and one with the architecture, as Incus names them.
		{[]string{"debian/12"}, []string{bookworm}},
		{[]string{"debian/13/amd64"}, []string{trixie}},
		// Anchored: a part of the value is not a match.
		{[]string{"release=book"}, nil},
		{[]string{"release=book.*"}, []string{bookworm}},
		{[]string{"os=^Deb"}, []string{bookworm, trixie}},
		{[]string{"os=Deb"}, nil},
		{[]string{"alias=debian/1[23]"}, []string{bookworm, trixie}},
		// All must hold.
		{[]string{"debian", "alias=debian/13"}, []string{trixie}},
		{[]string{"alpine", "arch=amd64"}, nil},
		{[]string{"arch=arm64|amd64", "variant=default", "dist=alpine"}, []string{alpine}},
		{[]string{"-d", "debian", "-r", "trixie"}, []string{trixie}},
		// build= finds an older build; --all-builds lists them all.
		{[]string{"build=" + oldBuild}, []string{"debian/bookworm/amd64/default@" + oldBuild}},
		{[]string{"--all-builds", "bookworm"}, []string{bookworm, "debian/bookworm/amd64/default@" + oldBuild}},
		// Not in the index: not listed.
		{[]string{"fedora"}, nil},
	} {
		if got := names(e.listJSON(c.args...)); !slices.Equal(got, c.want) {
			t.Errorf("list %q: %q, want %q", c.args, got, c.want)
		}
	}
	e.mustFail(e.list("release=("), `filter "release=(": "(" is not a regular expression`)
	e.mustFail(e.list("colour=blue"), `unknown key "colour"`)
	e.mustFail(e.list("--format", "xml"), `unknown list format "xml"`)
}

// TestListFormats reads every format back and finds the same rows, with
// what the streams give (sizes, sums, aliases, titles).
func TestListFormats(t *testing.T) {
	t.Parallel()
	e := streamsEnv(t, fetchtest.StreamsOptions{})
	want := e.listJSON("--all-builds")
	if len(want) != 4 {
		t.Fatalf("%d rows, want 4: %q", len(want), names(want))
	}
	for _, r := range want {
		rootfs, ok := e.srv.Get(r.Path + "rootfs.tar.xz")
		if !ok || r.Size == nil || *r.Size != int64(len(rootfs)) || r.SHA256 == nil || *r.SHA256 != fmt.Sprintf("%x", sha256.Sum256(rootfs)) {
			t.Errorf("%s: size %v, sha256 %v, want those of %s", r.Name, r.Size, r.SHA256, r.Path)
		}
		if r.OS == nil || *r.OS == "" || r.BuildDate == nil || len(r.Aliases) == 0 {
			t.Errorf("%s: os, build date or aliases missing: %+v", r.Name, r)
		}
	}

	t.Run("csv", func(t *testing.T) {
		r := e.list("--all-builds", "--format", "csv")
		recs, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
		if r.code != 0 || err != nil || len(recs) != len(want)+1 {
			t.Fatalf("%v\n%s", err, r)
		}
		head := recs[0]
		for i, rec := range recs[1:] {
			got := map[string]string{}
			for j, f := range head {
				got[f] = rec[j]
			}
			w := want[i]
			if got["name"] != w.Name || got["build"] != w.Build || got["size"] != strconv.FormatInt(*w.Size, 10) ||
				got["sha256"] != *w.SHA256 || got["aliases"] != strings.Join(w.Aliases, ",") || got["path"] != w.Path {
				t.Errorf("row %d: %v, want %+v", i, got, w)
			}
		}
	})
	t.Run("yaml", func(t *testing.T) {
		r := e.list("--all-builds", "--format", "yaml")
		if r.code != 0 {
			t.Fatal(r)
		}
		got := readYAMLRows(t, r.stdout)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("yaml read back:\n%+v\nwant\n%+v\n%s", got, want, r.stdout)
		}
		if py, err := exec.LookPath("python3"); err == nil && exec.Command(py, "-c", "import yaml").Run() == nil {
			cmd := exec.Command(py, "-c", "import sys, yaml, json; json.dump(yaml.safe_load(sys.stdin), sys.stdout)")
			cmd.Stdin = strings.NewReader(r.stdout)
			out, err := cmd.Output()
			var viaPy []listRow
			if err == nil {
				err = json.Unmarshal(out, &viaPy)
			}
			if err != nil || !reflect.DeepEqual(viaPy, want) {
				t.Errorf("PyYAML reads %v, %+v, want %+v", err, viaPy, want)
			}
		}
	})
	t.Run("table", func(t *testing.T) {
		r := e.list("--all-builds")
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		if r.code != 0 || len(lines) != len(want)+1 || strings.Join(strings.Fields(lines[0]), " ") != "NAME ALIASES ARCH VARIANT BUILD SIZE" {
			t.Fatal(r)
		}
		for i, l := range lines[1:] {
			// Aliases are "shortest (N more)": fields 1 to 3.
			f := strings.Fields(l)
			w := want[i]
			if len(f) != 8 || f[0] != w.Name || f[4] != w.Arch || f[5] != w.Variant || f[6] != w.Build || !strings.HasSuffix(f[7], "B") {
				t.Errorf("line %q, want %+v", l, w)
			}
			if short := slices.MinFunc(w.Aliases, func(a, b string) int { return len(a) - len(b) }); f[1] != short {
				t.Errorf("line %q: alias %q, want the shortest, %q", l, f[1], short)
			}
		}
	})
	t.Run("text", func(t *testing.T) {
		r := e.list("--all-builds", "--format", "text")
		lines := strings.Split(r.stdout, "\n")
		if r.code != 0 || len(lines) != len(want)+6 || lines[0] != "" || lines[1] != "---" || lines[3] != "---" || lines[len(lines)-2] != "---" {
			t.Fatalf("%q", r.stdout)
		}
		for i, l := range lines[4 : 4+len(want)] {
			w := want[i]
			if f := strings.Fields(l); !slices.Equal(f, []string{w.Dist, w.Release, w.Arch, w.Variant, w.Build}) {
				t.Errorf("line %q, want %+v", l, w)
			}
		}
		if r.stderr != "" {
			t.Errorf("stderr: %s", r.stderr)
		}
	})
}

// readYAMLRows reads the list command's YAML: a sequence of mappings of
// scalars (null, integers, plain or double-quoted strings) and one
// sequence, aliases.
func readYAMLRows(t *testing.T, s string) []listRow {
	t.Helper()
	if s == "[]\n" {
		return nil
	}
	var maps []map[string]any
	var listKey string
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "- "):
			maps = append(maps, map[string]any{})
			line = "  " + line[2:]
		case strings.HasPrefix(line, "    - "):
			m := maps[len(maps)-1]
			v := yamlValue(t, line[6:])
			m[listKey] = append(m[listKey].([]any), v)
			continue
		}
		if len(maps) == 0 || !strings.HasPrefix(line, "  ") {
			t.Fatalf("not the list's YAML: %q", line)
		}
		key, value, _ := strings.Cut(line[2:], ":")
		value = strings.TrimPrefix(value, " ")
		switch value {
		case "":
			listKey = key
			maps[len(maps)-1][key] = []any{}
		case "[]":
			maps[len(maps)-1][key] = []any{}
		default:
			maps[len(maps)-1][key] = yamlValue(t, value)
		}
	}
	b, err := json.Marshal(maps)
	if err != nil {
		t.Fatal(err)
	}
	var rows []listRow
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatal(err)
	}
	return rows
}

func yamlValue(t *testing.T, s string) any {
	t.Helper()
	switch {
	case s == "null":
		return nil
	case strings.HasPrefix(s, `"`):
		v, err := strconv.Unquote(s)
		if err != nil {
			t.Fatalf("YAML string %s: %v", s, err)
		}
		return v
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	return s
}

// TestListWithoutStreams: a server without simplestreams is listed from
// its index, with one line on stderr naming the fields that are missing;
// --list is byte for byte the same with streams and without, and never
// asks for them.
func TestListWithoutStreams(t *testing.T) {
	t.Parallel()
	e := twoImages(t)
	r := e.list("--format", "json")
	var rows []listRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); r.code != 0 || err != nil || len(rows) != 2 {
		t.Fatalf("%v\n%s", err, r)
	}
	for _, row := range rows {
		if row.Size != nil || row.SHA256 != nil || row.OS != nil || row.Aliases != nil || row.BuildDate == nil || row.Path == "" {
			t.Errorf("row from the index: %+v", row)
		}
	}
	warn := stderrLines(r, "WARNING: ")
	if len(warn) != 1 || strings.Count(r.stderr, "\n") != 1 ||
		!strings.Contains(warn[0], "no simplestreams") || !strings.Contains(warn[0], "os, release_title, aliases, size, sha256") {
		t.Errorf("want one line on stderr naming the missing fields:\n%s", r)
	}
	if r := e.list("alias=debian/12"); r.code != 0 || !strings.Contains(r.stderr, "filters on alias match nothing") {
		t.Errorf("a filter on aliases without streams:\n%s", r)
	}
	// The same rows as --list, in its layout.
	legacy := e.runRaw("--list", "--server", e.srv.Host, "--keyring", e.srv.KeyFile)
	text := e.list("--format", "text")
	if text.code != 0 || !strings.HasSuffix(legacy.stdout, text.stdout) || !strings.HasPrefix(text.stdout, "\n---\nDIST") {
		t.Errorf("list --format text:\n%s\nwant the end of --list's:\n%s", text, legacy)
	}

	formats := []string{"text", "json"}
	before := map[string]result{}
	listArgs := func(format string) []string {
		return []string{"--list", "--format", format, "--server", e.srv.Host, "--keyring", e.srv.KeyFile}
	}
	for _, f := range formats {
		before[f] = e.runRaw(listArgs(f)...)
	}
	if err := e.srv.EnableStreams(fetchtest.StreamsOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.AddRetainedBuild(oldImage()); err != nil {
		t.Fatal(err)
	}
	asked := len(e.srv.RequestsFor(fetchtest.StreamsIndexPath))
	for _, f := range formats {
		after, before := e.runRaw(listArgs(f)...), before[f]
		if before.code != 0 || after.code != before.code || after.stdout != before.stdout || after.stderr != before.stderr {
			t.Errorf("--list --format %s with streams:\n%s\nwithout:\n%s", f, after, before)
		}
	}
	if got := e.srv.RequestsFor(fetchtest.StreamsIndexPath); len(got) != asked {
		t.Errorf("--list asked for the streams: %v", got[asked:])
	}
}

// TestListStreamsSignature: streams whose images.json changed after it was
// signed, or that a key the run does not trust signed, are refused;
// unsigned streams are listed.
func TestListStreamsSignature(t *testing.T) {
	t.Parallel()
	stranger, err := fetchtest.NewKey("stranger")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("tampered", func(t *testing.T) {
		t.Parallel()
		e := streamsEnv(t, fetchtest.StreamsOptions{})
		// The .gpg is a real signature by the server's key, of the
		// catalogue as it was.
		e.srv.TamperStreams(fetchtest.StreamsImagesPath, func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"Debian"`), []byte(`"Debain"`), 1)
		}, false)
		e.mustFail(e.list(), "Invalid signature for images.json")
	})
	t.Run("stranger", func(t *testing.T) {
		t.Parallel()
		e := streamsEnv(t, fetchtest.StreamsOptions{SigningKey: stranger})
		e.mustFail(e.list(), "Invalid signature for index.json")
	})
	t.Run("unsigned", func(t *testing.T) {
		t.Parallel()
		e := streamsEnv(t, fetchtest.StreamsOptions{Unsigned: true})
		if got := names(e.listJSON("debian/12", "--all-builds")); len(got) != 2 {
			t.Errorf("unsigned streams: %q", got)
		}
	})
}
