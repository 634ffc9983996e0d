package compat

import (
	"bytes"
	"encoding/json"
	"io"
)

// listColumns are the widths of the --list columns DIST, RELEASE, ARCH,
// VARIANT and BUILD: the shell template's printf "%-15s  %-10s  %-5s  %-7s
// %-14s\n", which OpenWrt's LuCI and other scripts parse.
var listColumns = [...]int{15, 10, 5, 7, 14}

// WriteList writes the --list table: the header row, "---", one row per
// entry and "---". The caller writes what comes before (the blank line and
// the first "---"). Rows are byte for byte what the shell template's printf
// wrote, padding included: columns are padded with spaces to their width in
// bytes (printf(1) counts bytes), and a longer value pushes the rest of its
// row to the right.
func WriteList(w io.Writer, entries []Entry) error {
	var b bytes.Buffer
	listRow(&b, "DIST", "RELEASE", "ARCH", "VARIANT", "BUILD")
	b.WriteString("---\n")
	for _, e := range entries {
		listRow(&b, e.Dist, e.Release, e.Arch, e.Variant, e.Build)
	}
	b.WriteString("---\n")
	_, err := w.Write(b.Bytes())
	return err
}

func listRow(b *bytes.Buffer, cells ...string) {
	for i, c := range cells {
		if i > 0 {
			b.WriteString("  ")
		}
		b.WriteString(c)
		for n := len(c); n < listColumns[i]; n++ {
			b.WriteByte(' ')
		}
	}
	b.WriteByte('\n')
}

// WriteListJSON writes the entries as one line holding a JSON array ("[]"
// when there are none) of objects with the keys dist, release, arch,
// variant, build and path, for scripts.
func WriteListJSON(w io.Writer, entries []Entry) error {
	if entries == nil {
		entries = []Entry{}
	}
	enc := json.NewEncoder(w)
	// Paths and names are shown as they are; this is not embedded in HTML.
	enc.SetEscapeHTML(false)
	return enc.Encode(entries)
}
