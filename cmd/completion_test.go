package cmd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// completionCases are command lines (the last word being completed) and
// the completions every shell must offer for them, in order; nil: none
// from the program (the shell completes file names).
var completionCases = []struct {
	line string
	want []string
}{
	{"lxc-download ", []string{"list", "cache", "local", "mirror", "version", "help"}},
	{"lxc-download ca", []string{"cache"}},
	{"lxc-download cache ", []string{"list", "verify", "prune", "flush", "export", "import"}},
	{"lxc-download cache flush --d", []string{"--dist", "--dry-run"}},
	{"lxc-download -d debian --rel", []string{"--release"}},
	{"lxc-download --fo", []string{"--format", "--force-cache"}},
	{"lxc-download local --n", []string{"--no-dev", "--name"}},
	{"lxc-download -d ", nil},
	{"lxc-download --name c1 li", nil},
}

// TestCompletionProtocol asks the binary itself, as the scripts do.
func TestCompletionProtocol(t *testing.T) {
	for _, c := range completionCases {
		words := strings.Split(c.line, " ")
		r := runBinary(t, binary, nil, append(words[1:], "--generate-bash-completion")...)
		var got []string
		for _, w := range strings.Fields(r.Stdout) {
			if strings.HasPrefix(w, words[len(words)-1]) {
				got = append(got, w)
			}
		}
		if r.Code != 0 || strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("%q: got %q (exit %d, stderr %q), want %q", c.line, got, r.Code, r.Stderr, c.want)
		}
	}
}

// TestCompletionScripts runs the bash, zsh and fish completions that
// make install installs (man/completion) with the binary on PATH.
func TestCompletionScripts(t *testing.T) {
	dir, err := filepath.Abs("../man/completion")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Dir(binary) + string(os.PathListSeparator) + os.Getenv("PATH")
	shells := []struct {
		name, script string
	}{
		// bash: the completion function, with COMP_WORDS as bash splits.
		{"bash", `source "$1"; read -ra COMP_WORDS <<<"$2"; [[ $2 == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _lxc_download; printf '%s\n' "${COMPREPLY[@]}"`},
		// zsh: the autoloaded function, with compadd (matching the word
		// being completed) and _files standing in for the completion
		// system's.
		{"zsh", `compadd() { shift; local w; for w in "${(@P)1}"; do [[ $w == ${words[CURRENT]}* ]] && print -- $w; done; return 0; }; _files() { }
words=(${=2}); [[ $2 == *" " ]] && words+=(""); CURRENT=${#words}; source "$1"`},
		// fish: its own completion engine.
		{"fish", `source $argv[1]; complete -C "$argv[2]" | string replace -r '\t.*' ''; true`},
	}
	scripts := map[string]string{"bash": "lxc-download.bash", "zsh": "_lxc-download", "fish": "lxc-download.fish"}
	for _, sh := range shells {
		t.Run(sh.name, func(t *testing.T) {
			need(t, sh.name, have(sh.name))
			for _, c := range completionCases {
				args := []string{"-c", sh.script, sh.name, filepath.Join(dir, scripts[sh.name]), c.line}
				if sh.name == "fish" {
					args = []string{"-c", sh.script, filepath.Join(dir, scripts[sh.name]), c.line}
				}
				cmd := exec.Command(sh.name, args...)
				cmd.Env = append(os.Environ(), "PATH="+path)
				cmd.Dir = t.TempDir() // file names, where completed, are none
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("%q: %v\n%s", c.line, err, out)
				}
				got := strings.Fields(string(out))
				if sh.name == "fish" {
					// fish also offers what its own rules know: keep the
					// program's words.
					got = filterWords(got, c.want)
				}
				if strings.Join(sortedCopy(got), " ") != strings.Join(sortedCopy(c.want), " ") {
					t.Errorf("%q: got %q, want %q", c.line, got, c.want)
				}
			}
		})
	}
}

func filterWords(got, want []string) []string {
	var out []string
	for _, g := range got {
		for _, w := range want {
			if g == w {
				out = append(out, g)
			}
		}
	}
	return out
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}
