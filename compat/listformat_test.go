package compat

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// trickyRows are rows whose values a careless writer of any format would
// get wrong: YAML words and numbers, separators, quotes, control
// characters, non-ASCII.
func trickyRows() []ListRow {
	return []ListRow{
		{Dist: "yes", Release: "1.0", Arch: "a: b", Variant: "-x", Build: "20261120_05:24", Path: "/images/yes/1.0/a: b/-x/20261120_05:24/",
			OS: "#comment", ReleaseTitle: "", Aliases: []string{"null", "~", "on", "Y", "x,y", `say "hi"`}, Size: 0, SHA256: sha("0"), FromStreams: true},
		{Dist: "Débian", Release: "true", Arch: "0x1F", Variant: "[a]", Build: "1:20", Path: "/p/",
			OS: "back\\slash\ttab", ReleaseTitle: "line\nbreak\u2028", Aliases: []string{}, Size: 1 << 40, SHA256: sha("f"), FromStreams: true},
		{Dist: "debian", Release: "bookworm", Arch: "amd64", Variant: "default", Build: "20261120_05:24",
			Path: "/images/debian/bookworm/amd64/default/20261120_05:24/"},
	}
}

// expected is a row's fields in ListFields order as the machine formats
// must give them back; nil is unknown.
func expected(r ListRow) map[string]any {
	m := map[string]any{}
	rec := record(r)
	for i, f := range ListFields {
		if rec[i] == nil {
			m[f] = nil
		} else {
			m[f] = *rec[i]
		}
	}
	if r.FromStreams {
		m["aliases"] = append([]string{}, r.Aliases...)
	}
	return m
}

func TestListFormatText(t *testing.T) {
	rows := sampleStreams(t).Rows()
	var got, want bytes.Buffer
	if err := WriteRows(&got, ListText, rows); err != nil {
		t.Fatal(err)
	}
	var entries []Entry
	for _, r := range rows {
		entries = append(entries, r.Entry())
	}
	if err := WriteList(&want, entries); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Errorf("text format is not WriteList's:\n%s\nwant\n%s", got.String(), want.String())
	}
	// The layout LuCI parses, byte for byte.
	golden := "DIST             RELEASE     ARCH   VARIANT  BUILD         \n---\n" +
		"alpine           3.20        amd64  default  20261121_13:00\n" +
		"debian           bookworm    amd64  cloud    20261120_05:24\n" +
		"debian           bookworm    amd64  default  20261120_05:24\n" +
		"debian           bookworm    amd64  default  20261119_05:24\n" +
		"debian           bookworm    amd64  default  20261118_05:24\n" +
		"debian           trixie      arm64  default  20261120_05:30\n" +
		"debian           trixie      arm64  default  20261119_05:30\n---\n"
	if got.String() != golden {
		t.Errorf("text format:\n%q\nwant\n%q", got.String(), golden)
	}
}

func TestListFormatTable(t *testing.T) {
	s := sampleStreams(t)
	ix, err := ParseIndex([]byte(sampleIndex))
	if err != nil {
		t.Fatal(err)
	}
	rows := append(SelectRows(s.Rows(), nil, false), IndexRows(ix.Entries[3:4])...)
	var b bytes.Buffer
	if err := WriteRows(&b, ListTable, rows); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"NAME                           ALIASES                   ARCH   VARIANT  BUILD           SIZE\n" +
		"alpine/3.20/amd64/default      alpine/3.20 (1 more)      amd64  default  20261121_13:00  91.3MiB\n" +
		"debian/bookworm/amd64/cloud    debian/12/cloud (1 more)  amd64  cloud    20261120_05:24  91.3MiB\n" +
		"debian/bookworm/amd64/default  debian/12 (3 more)        amd64  default  20261120_05:24  91.3MiB\n" +
		"debian/trixie/arm64/default    debian/13 (3 more)        arm64  default  20261120_05:30  91.3MiB\n" +
		"alpine/3.20/amd64/default      -                         amd64  default  20261121_13:00  -\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant\n%s", b.String(), want)
	}
	// Columns line up by characters, not bytes.
	b.Reset()
	if err := WriteRows(&b, ListTable, trickyRows()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	col := strings.Index(lines[0], "ALIASES")
	for _, l := range lines[1:3] {
		if r := []rune(l); len(r) <= col || r[col-1] != ' ' || r[col] == ' ' {
			t.Errorf("ALIASES column not at %d in %q", col, l)
		}
	}
	for n, want := range map[int64]string{0: "0B", 1023: "1023B", 1024: "1.0KiB", 95705728: "91.3MiB", 3 << 30: "3.0GiB", 1 << 50: "1024.0TiB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestListFormatCSV(t *testing.T) {
	rows := append(sampleStreams(t).Rows(), trickyRows()...)
	var b bytes.Buffer
	if err := WriteRows(&b, ListCSV, rows); err != nil {
		t.Fatal(err)
	}
	// Every line ends in CRLF, even one inside a quoted field.
	if !strings.HasPrefix(b.String(), strings.Join(ListFields, ",")+"\r\n") || strings.Count(b.String(), "\n") != strings.Count(b.String(), "\r\n") {
		t.Errorf("not RFC 4180 lines:\n%q", b.String())
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(rows)+1 || !reflect.DeepEqual(recs[0], ListFields) {
		t.Fatalf("%d records, header %q", len(recs), recs[0])
	}
	for i, r := range rows {
		want := expected(r)
		for j, f := range ListFields {
			w := ""
			switch v := want[f].(type) {
			case string:
				w = v
			case []string:
				w = strings.Join(v, ",")
			}
			if got := recs[i+1][j]; got != w {
				t.Errorf("row %d %s: %q, want %q", i, f, got, w)
			}
		}
	}
}

func TestListFormatJSON(t *testing.T) {
	ix, err := ParseIndex([]byte(sampleIndex))
	if err != nil {
		t.Fatal(err)
	}
	rows := append(append(sampleStreams(t).Rows(), trickyRows()...), IndexRows(ix.Entries)...)
	var b bytes.Buffer
	if err := WriteRows(&b, ListJSON, rows); err != nil {
		t.Fatal(err)
	}
	if bytes.Count(b.Bytes(), []byte("\n")) != 1 {
		t.Errorf("not one line: %q", b.String())
	}
	var back []map[string]any
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back) != len(rows) {
		t.Fatalf("%d objects for %d rows", len(back), len(rows))
	}
	for i, r := range rows {
		want := expected(r)
		if len(back[i]) != len(ListFields) {
			t.Errorf("row %d has keys %v", i, back[i])
		}
		for _, f := range ListFields {
			got := back[i][f]
			switch v := got.(type) {
			case float64:
				got = strconv.FormatFloat(v, 'f', -1, 64)
			case []any:
				s := []string{}
				for _, a := range v {
					s = append(s, fmt.Sprintf("%v (%T)", a, a))
					if str, ok := a.(string); ok {
						s[len(s)-1] = str
					}
				}
				got = s
			}
			if !reflect.DeepEqual(got, want[f]) {
				t.Errorf("row %d %s: %#v, want %#v", i, f, got, want[f])
			}
		}
	}
	// For the index, the objects hold what WriteListJSON wrote.
	var old, now bytes.Buffer
	if err := WriteListJSON(&old, ix.Entries); err != nil {
		t.Fatal(err)
	}
	if err := WriteRows(&now, ListJSON, IndexRows(ix.Entries)); err != nil {
		t.Fatal(err)
	}
	var oldEntries, nowEntries []Entry
	if err := json.Unmarshal(old.Bytes(), &oldEntries); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(now.Bytes(), &nowEntries); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(oldEntries, nowEntries) {
		t.Errorf("index rows in JSON:\n%v\nwant\n%v", nowEntries, oldEntries)
	}
	now.Reset()
	if err := WriteRows(&now, ListJSON, nil); err != nil || now.String() != "[]\n" {
		t.Errorf("no rows: %q %v", now.String(), err)
	}
}

func TestListFormatYAML(t *testing.T) {
	var b bytes.Buffer
	if err := WriteRows(&b, ListYAML, trickyRows()); err != nil {
		t.Fatal(err)
	}
	golden := `- name: "yes/1.0/a: b/-x"
  dist: "yes"
  release: "1.0"
  arch: "a: b"
  variant: "-x"
  build: "20261120_05:24"
  build_date: "2026-11-20T05:24:00Z"
  size: 0
  sha256: "0000000000000000000000000000000000000000000000000000000000000000"
  path: "/images/yes/1.0/a: b/-x/20261120_05:24/"
  os: "#comment"
  release_title: ""
  aliases:
    - "null"
    - "~"
    - "on"
    - "Y"
    - "x,y"
    - "say \"hi\""
- name: "Débian/true/0x1F/[a]"
  dist: "Débian"
  release: "true"
  arch: "0x1F"
  variant: "[a]"
  build: "1:20"
  build_date: null
  size: 1099511627776
  sha256: ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff
  path: /p/
  os: "back\\slash\u0009tab"
  release_title: "line\u000abreak\u2028"
  aliases: []
- name: debian/bookworm/amd64/default
  dist: debian
  release: bookworm
  arch: amd64
  variant: default
  build: "20261120_05:24"
  build_date: "2026-11-20T05:24:00Z"
  size: null
  sha256: null
  path: "/images/debian/bookworm/amd64/default/20261120_05:24/"
  os: null
  release_title: null
  aliases: null
`
	if b.String() != golden {
		t.Errorf("yaml:\n%s\nwant\n%s", b.String(), golden)
	}
	checkYAMLRoundTrip(t, trickyRows(), b.Bytes())
	b.Reset()
	if err := WriteRows(&b, ListYAML, nil); err != nil || b.String() != "[]\n" {
		t.Errorf("no rows: %q %v", b.String(), err)
	}
}

// checkYAMLRoundTrip reads back what writeYAML wrote for rows.
func checkYAMLRoundTrip(t testing.TB, rows []ListRow, data []byte) {
	t.Helper()
	back, err := readListYAML(data)
	if err != nil {
		t.Fatalf("%v in\n%s", err, data)
	}
	if len(back) != len(rows) {
		t.Fatalf("%d records for %d rows", len(back), len(rows))
	}
	for i, r := range rows {
		if want := expected(r); !reflect.DeepEqual(back[i], want) {
			t.Fatalf("row %d: %#v\nwant %#v", i, back[i], want)
		}
	}
}

// readListYAML reads the YAML that writeYAML writes (and only that): a
// sequence of mappings whose values are null, plain or double-quoted
// scalars, or a block sequence or [] of them. It is strict: anything else
// is an error, so that a writer going astray is caught.
func readListYAML(data []byte) ([]map[string]any, error) {
	text := string(data)
	if text == "[]\n" {
		return nil, nil
	}
	if !strings.HasSuffix(text, "\n") {
		return nil, errors.New("no final newline")
	}
	var out []map[string]any
	var cur map[string]any
	var list *[]string
	for n, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		bad := func(why string) error { return fmt.Errorf("line %d %q: %s", n+1, line, why) }
		switch {
		case strings.HasPrefix(line, "    - "):
			if list == nil {
				return nil, bad("sequence item outside a sequence")
			}
			v, err := yamlScalar(line[6:])
			if err != nil || v == nil {
				return nil, bad(fmt.Sprint("item: ", err))
			}
			*list = append(*list, *v)
			continue
		case strings.HasPrefix(line, "- "):
			cur = map[string]any{}
			out = append(out, cur)
			line = line[2:]
		case strings.HasPrefix(line, "  ") && cur != nil:
			line = line[2:]
		default:
			return nil, bad("unexpected")
		}
		list = nil
		key, rest, ok := strings.Cut(line, ":")
		if !ok || !yamlPlain(key) {
			return nil, bad("no key")
		}
		if _, dup := cur[key]; dup {
			return nil, bad("repeated key")
		}
		switch rest {
		case "":
			l := []string{}
			cur[key] = &l
			list = &l
			continue
		case " []":
			cur[key] = []string{}
			continue
		}
		if !strings.HasPrefix(rest, " ") {
			return nil, bad("no space after the colon")
		}
		v, err := yamlScalar(rest[1:])
		if err != nil {
			return nil, bad(err.Error())
		}
		if v == nil {
			cur[key] = nil
		} else {
			cur[key] = *v
		}
	}
	for _, m := range out {
		for k, v := range m {
			if l, ok := v.(*[]string); ok {
				m[k] = *l
			}
		}
	}
	return out, nil
}

// yamlScalar reads one scalar: null, a double-quoted string with the
// escapes writeYAMLString uses, or a plain one.
func yamlScalar(s string) (*string, error) {
	if s == "null" {
		return nil, nil
	}
	if !strings.HasPrefix(s, `"`) {
		if _, err := strconv.ParseInt(s, 10, 64); err != nil && !yamlPlain(s) {
			return nil, fmt.Errorf("%q may not be plain", s)
		}
		return &s, nil
	}
	if len(s) < 2 || !strings.HasSuffix(s, `"`) {
		return nil, fmt.Errorf("unterminated %q", s)
	}
	var b strings.Builder
	body := s[1 : len(s)-1]
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c == '"' {
			return nil, fmt.Errorf("bare quote in %q", s)
		}
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(body) {
			return nil, fmt.Errorf("lone backslash in %q", s)
		}
		i++
		switch body[i] {
		case '"', '\\':
			b.WriteByte(body[i])
		case 'u':
			if i+4 >= len(body) {
				return nil, fmt.Errorf("short \\u in %q", s)
			}
			r, err := strconv.ParseUint(body[i+1:i+5], 16, 32)
			if err != nil {
				return nil, err
			}
			b.WriteRune(rune(r))
			i += 4
		default:
			return nil, fmt.Errorf("escape \\%c in %q", body[i], s)
		}
	}
	v := b.String()
	if !utf8.ValidString(v) {
		return nil, fmt.Errorf("%q is not UTF-8", s)
	}
	return &v, nil
}

// TestListFormatYAMLWithPyYAML reads the YAML with a real YAML 1.1 reader
// where the machine has one (PyYAML), as a check on the quoting rules that
// does not depend on this package's own reader.
func TestListFormatYAMLWithPyYAML(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	if exec.Command(py, "-c", "import yaml").Run() != nil {
		t.Skip("python3 has no yaml module (PyYAML)")
	}
	rows := append(sampleStreams(t).Rows(), trickyRows()...)
	var b bytes.Buffer
	if err := WriteRows(&b, ListYAML, rows); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-c", "import sys, yaml, json; json.dump(yaml.safe_load(sys.stdin), sys.stdout)")
	cmd.Stdin = &b
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var back []map[string]any
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		want := expected(r)
		for _, f := range ListFields {
			got := back[i][f]
			switch v := got.(type) {
			case float64:
				got = strconv.FormatFloat(v, 'f', -1, 64)
			case []any:
				s := []string{}
				for _, a := range v {
					s = append(s, fmt.Sprintf("%v (%T)", a, a))
					if str, ok := a.(string); ok {
						s[len(s)-1] = str
					}
				}
				got = s
			}
			if !reflect.DeepEqual(got, want[f]) {
				t.Errorf("row %d %s: PyYAML reads %#v, want %#v", i, f, got, want[f])
			}
		}
	}
}

func TestParseListFormat(t *testing.T) {
	for _, f := range ListFormats {
		if got, err := ParseListFormat(string(f)); got != f || err != nil {
			t.Errorf("%s: %v %v", f, got, err)
		}
	}
	if _, err := ParseListFormat("xml"); err == nil || err.Error() != `unknown list format "xml" (known: text, table, csv, json, yaml)` {
		t.Errorf("xml: %v", err)
	}
	if err := WriteRows(&bytes.Buffer{}, "xml", nil); err == nil {
		t.Error("WriteRows wrote an unknown format")
	}
}
