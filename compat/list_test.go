package compat

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

func TestWriteList(t *testing.T) {
	entries := []Entry{
		{"debian", "bookworm", "amd64", "default", "20261120_05:24", "/images/debian/bookworm/amd64/default/20261120_05:24/"},
		{"alpine", "3.20", "ppc64el", "default", "20261121_13:00", "/p/"},
	}
	var b bytes.Buffer
	if err := WriteList(&b, entries); err != nil {
		t.Fatal(err)
	}
	// Written out by hand: trailing spaces are part of the format.
	want := "" +
		"DIST             RELEASE     ARCH   VARIANT  BUILD         \n" +
		"---\n" +
		"debian           bookworm    amd64  default  20261120_05:24\n" +
		"alpine           3.20        ppc64el  default  20261121_13:00\n" +
		"---\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}

	b.Reset()
	if err := WriteList(&b, nil); err != nil {
		t.Fatal(err)
	}
	if want := "DIST             RELEASE     ARCH   VARIANT  BUILD         \n---\n---\n"; b.String() != want {
		t.Errorf("empty list %q, want %q", b.String(), want)
	}
}

// TestWriteListPrintf compares the rows with what printf(1) makes of the
// shell template's format under each shell at hand (sh, bash, busybox sh),
// for values shorter and longer than their columns and with multibyte
// characters (printf pads by bytes).
func TestWriteListPrintf(t *testing.T) {
	entries := []Entry{
		{"debian", "bookworm", "amd64", "default", "20261120_05:24", "/p/"},
		{"", "", "", "", "", ""},
		{"a-very-long-distribution-name", "release-longer-than-ten", "riscv64", "variant-x", "20261120_05:24_extra", "/p/"},
		{"débian", "très", "é", "défaut", "été", "/p/"},
		{"x y", " lead", "trail ", "%s", `\n`, "/p/"},
	}
	format := "%-15s  %-10s  %-5s  %-7s  %-14s\\n"
	var script strings.Builder
	fmt.Fprintf(&script, "printf '%s' DIST RELEASE ARCH VARIANT BUILD\necho ---\n", format)
	for _, e := range entries {
		fmt.Fprintf(&script, "printf '%s' %s %s %s %s %s\n", format, shQuote(e.Dist), shQuote(e.Release), shQuote(e.Arch), shQuote(e.Variant), shQuote(e.Build))
	}
	script.WriteString("echo ---\n")
	var got bytes.Buffer
	if err := WriteList(&got, entries); err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, shell := range [][]string{{"sh"}, {"bash"}, {"busybox", "sh"}} {
		path, err := exec.LookPath(shell[0])
		if err != nil {
			continue
		}
		ran++
		cmd := exec.Command(path, append(shell[1:], "-c", script.String())...)
		cmd.Env = []string{"LC_ALL=C.UTF-8", "PATH=/usr/bin:/bin"}
		want, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", shell, err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("WriteList:\n%q\nprintf(1) under %s:\n%q", got.Bytes(), shell, want)
		}
	}
	if ran == 0 {
		t.Skip("no shell to run printf(1) with")
	}
}

// shQuote quotes s for sh as one word.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func TestWriteListJSON(t *testing.T) {
	var b bytes.Buffer
	if err := WriteListJSON(&b, []Entry{{"alpine", "3.20", "amd64", "default", "20261121_13:00", "/images/alpine/3.20/amd64/default/20261121_13:00/"}}); err != nil {
		t.Fatal(err)
	}
	want := `[{"dist":"alpine","release":"3.20","arch":"amd64","variant":"default","build":"20261121_13:00","path":"/images/alpine/3.20/amd64/default/20261121_13:00/"}]` + "\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
	for _, es := range [][]Entry{nil, {}} {
		b.Reset()
		if err := WriteListJSON(&b, es); err != nil || b.String() != "[]\n" {
			t.Errorf("no entries (%#v): %q, %v", es, b.String(), err)
		}
	}
	b.Reset()
	if err := WriteListJSON(&b, []Entry{{Dist: "a<b>&c", Path: "/x\"y/"}}); err != nil {
		t.Fatal(err)
	}
	if want := `[{"dist":"a<b>&c","release":"","arch":"","variant":"","build":"","path":"/x\"y/"}]` + "\n"; b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

// failWriter fails every write, like a closed pipe.
type failWriter struct{}

var errWrite = errors.New("write failed")

func (failWriter) Write([]byte) (int, error) { return 0, errWrite }

func TestWriteListErrors(t *testing.T) {
	if err := WriteList(failWriter{}, nil); !errors.Is(err, errWrite) {
		t.Errorf("WriteList: %v", err)
	}
	if err := WriteListJSON(failWriter{}, nil); !errors.Is(err, errWrite) {
		t.Errorf("WriteListJSON: %v", err)
	}
}
