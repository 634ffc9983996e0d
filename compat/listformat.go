package compat

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ListFormat is an output format of the listing.
type ListFormat string

// The listing's formats.
const (
	// ListText is the shell template's --list layout (WriteList), which
	// LuCI and other scripts parse: DIST, RELEASE, ARCH, VARIANT and BUILD
	// only. The caller writes what comes before the table, as for
	// WriteList.
	ListText ListFormat = "text"
	// ListTable is an aligned table for people: NAME, ALIASES, ARCH,
	// VARIANT, BUILD and SIZE.
	ListTable ListFormat = "table"
	// ListCSV is RFC 4180 CSV (CRLF line ends, quotes where needed) with a
	// header line naming the fields of ListFields.
	ListCSV ListFormat = "csv"
	// ListJSON is one line holding a JSON array of objects with the
	// fields of ListFields; those the source does not know are null. Its
	// objects keep WriteListJSON's keys (dist, release, arch, variant,
	// build, path) with the same values.
	ListJSON ListFormat = "json"
	// ListYAML is a YAML sequence of mappings with the fields of
	// ListFields, aliases as a sequence.
	ListYAML ListFormat = "yaml"
)

// ListFormats are the formats, in the order help lists them.
var ListFormats = []ListFormat{ListText, ListTable, ListCSV, ListJSON, ListYAML}

// ListFields are the fields of each row in the csv, json and yaml formats,
// in their order. build_date is the build id's time in RFC 3339 (UTC),
// size and sha256 are the rootfs's, aliases are as the server writes them
// (comma-separated in csv).
var ListFields = []string{"name", "dist", "release", "arch", "variant", "build", "build_date",
	"size", "sha256", "path", "os", "release_title", "aliases"}

// ParseListFormat returns the format named s, or an error listing them.
func ParseListFormat(s string) (ListFormat, error) {
	for _, f := range ListFormats {
		if string(f) == s {
			return f, nil
		}
	}
	names := make([]string, len(ListFormats))
	for i, f := range ListFormats {
		names[i] = string(f)
	}
	return "", fmt.Errorf("unknown list format %q (known: %s)", PrintableLine(s), strings.Join(names, ", "))
}

// WriteRows writes the rows in format f, in their order, in one write.
func WriteRows(w io.Writer, f ListFormat, rows []ListRow) error {
	var b bytes.Buffer
	switch f {
	case ListText:
		entries := make([]Entry, len(rows))
		for i, r := range rows {
			entries[i] = r.Entry()
		}
		return WriteList(w, entries)
	case ListTable:
		writeTable(&b, rows)
	case ListCSV:
		if err := writeCSV(&b, rows); err != nil {
			return err
		}
	case ListJSON:
		if err := writeJSON(&b, rows); err != nil {
			return err
		}
	case ListYAML:
		writeYAML(&b, rows)
	default:
		_, err := ParseListFormat(string(f))
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}

// buildDate is the time of a build id in RFC 3339, "" if the id has not
// the usual form (the LXC index does not check it).
func buildDate(id string) string {
	if !ValidBuildID(id) {
		return ""
	}
	t, _ := time.Parse(BuildIDLayout, id)
	return t.UTC().Format(time.RFC3339)
}

// record is a row's fields in ListFields order; nil is unknown.
func record(r ListRow) []*string {
	str := func(s string) *string { return &s }
	known := func(s string) *string {
		if !r.FromStreams {
			return nil
		}
		return &s
	}
	var size *string
	if r.FromStreams {
		size = str(strconv.FormatInt(r.Size, 10))
	}
	var date *string
	if d := buildDate(r.Build); d != "" {
		date = &d
	}
	return []*string{str(r.Name()), str(r.Dist), str(r.Release), str(r.Arch), str(r.Variant), str(r.Build), date,
		size, known(r.SHA256), str(r.Path), known(r.OS), known(r.ReleaseTitle), nil}
}

func writeTable(b *bytes.Buffer, rows []ListRow) {
	cells := [][]string{{"NAME", "ALIASES", "ARCH", "VARIANT", "BUILD", "SIZE"}}
	for _, r := range rows {
		size := "-"
		if r.FromStreams {
			size = humanSize(r.Size)
		}
		cells = append(cells, []string{r.Name(), shortAliases(r.Aliases), r.Arch, r.Variant, r.Build, size})
	}
	widths := make([]int, len(cells[0]))
	for _, row := range cells {
		for i, c := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, row := range cells {
		for i, c := range row {
			b.WriteString(c)
			if i == len(row)-1 {
				break
			}
			for n := utf8.RuneCountInString(c); n < widths[i]+2; n++ {
				b.WriteByte(' ')
			}
		}
		b.WriteByte('\n')
	}
}

// shortAliases is the ALIASES cell: the shortest alias (the first in byte
// order of those as short) and how many more there are, as Incus shows
// them; "-" for none.
func shortAliases(aliases []string) string {
	if len(aliases) == 0 {
		return "-"
	}
	best := aliases[0]
	for _, a := range aliases[1:] {
		if len(a) < len(best) || (len(a) == len(best) && a < best) {
			best = a
		}
	}
	if len(aliases) == 1 {
		return best
	}
	return fmt.Sprintf("%s (%d more)", best, len(aliases)-1)
}

// humanSize is n bytes in binary units with one decimal ("91.2MiB").
func humanSize(n int64) string {
	if n < 1024 {
		return strconv.FormatInt(n, 10) + "B"
	}
	v := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= 1024
		if v < 1024 || unit == "TiB" {
			return strconv.FormatFloat(v, 'f', 1, 64) + unit
		}
	}
	panic("unreachable")
}

func writeCSV(b *bytes.Buffer, rows []ListRow) error {
	cw := csv.NewWriter(b)
	cw.UseCRLF = true
	if err := cw.Write(ListFields); err != nil {
		return err
	}
	line := make([]string, len(ListFields))
	for _, r := range rows {
		for i, v := range record(r) {
			line[i] = ""
			if v != nil {
				line[i] = *v
			}
		}
		line[len(line)-1] = strings.Join(r.Aliases, ",")
		if err := cw.Write(line); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// jsonRow is a row in the json format, its fields in ListFields order.
type jsonRow struct {
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

func writeJSON(b *bytes.Buffer, rows []ListRow) error {
	out := make([]jsonRow, 0, len(rows))
	for _, r := range rows {
		rec := record(r)
		j := jsonRow{Name: r.Name(), Dist: r.Dist, Release: r.Release, Arch: r.Arch, Variant: r.Variant,
			Build: r.Build, BuildDate: rec[6], SHA256: rec[8], Path: r.Path, OS: rec[10], ReleaseTitle: rec[11]}
		if r.FromStreams {
			size := r.Size
			j.Size = &size
			j.Aliases = append([]string{}, r.Aliases...)
		}
		out = append(out, j)
	}
	enc := json.NewEncoder(b)
	// Paths and names are shown as they are; this is not embedded in HTML.
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}

// writeYAML writes the rows as a YAML sequence of mappings. Keys are
// plain; values are plain only when no YAML 1.1 or 1.2 reader could take
// them for anything but a string (see yamlPlain), else double-quoted.
func writeYAML(b *bytes.Buffer, rows []ListRow) {
	if len(rows) == 0 {
		b.WriteString("[]\n")
		return
	}
	for _, r := range rows {
		for i, v := range record(r) {
			if i == 0 {
				b.WriteString("- ")
			} else {
				b.WriteString("  ")
			}
			b.WriteString(ListFields[i])
			b.WriteByte(':')
			switch {
			case ListFields[i] == "aliases":
				switch {
				case !r.FromStreams:
					b.WriteString(" null\n")
				case len(r.Aliases) == 0:
					b.WriteString(" []\n")
				default:
					b.WriteByte('\n')
					for _, a := range r.Aliases {
						b.WriteString("    - ")
						writeYAMLString(b, a)
						b.WriteByte('\n')
					}
				}
				continue
			case v == nil:
				b.WriteString(" null")
			case ListFields[i] == "size":
				b.WriteByte(' ')
				b.WriteString(*v)
			default:
				b.WriteByte(' ')
				writeYAMLString(b, *v)
			}
			b.WriteByte('\n')
		}
	}
}

// yamlPlain reports whether s may be written as a plain YAML scalar and
// still be read back as that string: it starts with a letter or "/", has
// only letters, digits and "/._+-", and is none of the words YAML 1.1
// reads as booleans or null. Anything else (numbers, "1.0", build ids
// like "20261120_05:24", which YAML 1.1 reads as base-60 numbers, "a: b",
// a leading "-", "#" or quote) is quoted.
func yamlPlain(s string) bool {
	if s == "" {
		return false
	}
	if c := s[0]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '/') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("/._+-", c) >= 0) {
			return false
		}
	}
	switch strings.ToLower(s) {
	case "y", "n", "yes", "no", "true", "false", "on", "off", "null":
		return false
	}
	return true
}

// writeYAMLString writes s plain if it can be, else double-quoted with
// YAML's escapes for the characters a double-quoted scalar may not hold
// as they are.
func writeYAMLString(b *bytes.Buffer, s string) {
	if yamlPlain(s) {
		b.WriteString(s)
		return
	}
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\ufffd`)
		case r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == 0x2028 || r == 0x2029 || r == 0xfeff || r >= 0xfffe && r <= 0xffff:
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	b.WriteByte('"')
}
