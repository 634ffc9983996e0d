package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lxc/lxc-download/cmd"
)

// TestCommittedFilesCurrent fails while the committed man page or
// completions differ from what the command definitions make: after an
// option or a command changes, run `make man` and commit the result.
func TestCommittedFilesCurrent(t *testing.T) {
	files, err := generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range sortedNames(files) {
		got, err := os.ReadFile(filepath.Join("..", name))
		if err != nil {
			t.Errorf("man/%s: %v (run make man)", name, err)
			continue
		}
		if !bytes.Equal(got, files[name]) {
			t.Errorf("man/%s is stale: run make man (go generate ./man) and commit it", name)
		}
	}
}

// TestEveryOptionHasText: the generator refuses an option it has no text
// for, and text for an option the program does not take.
func TestEveryOptionHasText(t *testing.T) {
	saved := optionDetails["dist"]
	delete(optionDetails, "dist")
	_, err := generate()
	optionDetails["dist"] = saved
	if err == nil || !strings.Contains(err.Error(), "--dist has no text") {
		t.Errorf("an option without text: %v", err)
	}
	optionDetails["no-such-option"] = "x\n"
	_, err = generate()
	delete(optionDetails, "no-such-option")
	if err == nil || !strings.Contains(err.Error(), "--no-such-option, which the program does not take") {
		t.Errorf("text for an unknown option: %v", err)
	}
	environmentDetails["NO_SUCH_VARIABLE"] = ""
	_, err = generate()
	delete(environmentDetails, "NO_SUCH_VARIABLE")
	if err == nil {
		t.Errorf("text for an unknown variable must be refused")
	}
}

// TestPageMatchesHelp checks the page against what the program prints:
// every option of --help and every command's options are on it, with
// their help texts.
func TestPageMatchesHelp(t *testing.T) {
	files, err := generate()
	if err != nil {
		t.Fatal(err)
	}
	page := plain(string(files["lxc-download.1"]))
	m := cmd.NewManual()
	for _, o := range m.Options {
		for _, n := range o.Typed {
			if !strings.Contains(page, n) {
				t.Errorf("%s is not on the page", n)
			}
		}
		if !strings.Contains(page, o.Usage) {
			t.Errorf("the --help text of --%s is not on the page: %q", o.Name, o.Usage)
		}
	}
	for _, c := range m.Commands {
		if !strings.Contains(page, c.UsageLine) || !strings.Contains(page, c.Usage) {
			t.Errorf("%s is not on the page", strings.Join(c.Path, " "))
		}
		help := cmd.CommandHelp(c.Path[1:]...)
		for _, f := range c.Options {
			if !strings.Contains(page, strings.ReplaceAll(f.Usage, "`", "")) || !strings.Contains(help, strings.ReplaceAll(f.Names, "`", "")) {
				t.Errorf("%s %s: not on the page, or not in its help", strings.Join(c.Path, " "), f.Names)
			}
		}
	}
}

// TestPageRenders runs the page through groff with all warnings on.
func TestPageRenders(t *testing.T) {
	if _, err := exec.LookPath("groff"); err != nil {
		t.Skip("needs groff")
	}
	out, err := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z", "../lxc-download.1").CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("groff: %v\n%s", err, out)
	}
}

// plain is troff source with the escapes this generator writes undone
// and its lines joined, for searching.
func plain(s string) string {
	s = strings.NewReplacer(`\fB`, "", `\fI`, "", `\fR`, "", `\-`, "-", `\e`, `\`, `\&`, "").Replace(s)
	return strings.Join(strings.Fields(s), " ")
}
