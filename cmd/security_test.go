package cmd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// The security model's end-to-end cases: each builds the attack so that
// the run would do what the attacker wants if the defence were missing.

// TestServerTextFiltered: what the server says reaches the terminal
// without the escape sequences that would let it rewrite the screen.
func TestServerTextFiltered(t *testing.T) {
	img := fetchtest.DefaultImage()
	img.Meta["create-message"] = "Welcome\x1b]0;owned\x07 to \x1b[2J\x1b[31mred\x1b[0m\u009b31m\n\ttabbed\n"
	e := newEnv(t, img)
	r := e.run(e.image()...)
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	if strings.ContainsAny(r.stdout, "\x1b\x07\u009b") {
		t.Errorf("control characters of the create-message reached stdout:\n%q", r.stdout)
	}
	if !strings.Contains(r.stdout, "Welcome]0;owned to [2J[31mred[0m31m\n\ttabbed\n") {
		t.Errorf("the create-message's text was not kept:\n%q", r.stdout)
	}
}

// TestNameControlCharacters: a --name with a newline would add lines of
// its own to the container's config.
func TestNameControlCharacters(t *testing.T) {
	for _, name := range []string{"c1\nlxc.mount.entry = /etc etc none bind 0 0", "c1\x1b[2J", "c1\r"} {
		e := newEnv(t)
		before, err := os.ReadFile(filepath.Join(e.path, "config"))
		if err != nil {
			t.Fatal(err)
		}
		r := e.runRaw(append([]string{"--path=" + e.path, "--name=" + name, "--rootfs=" + e.rootfs}, e.image()...)...)
		e.mustFail(r, "--name")
		if strings.ContainsAny(r.stderr, "\x1b\r") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("the ERROR line carries the name's control characters:\n%q", r.stderr)
		}
		after, _ := os.ReadFile(filepath.Join(e.path, "config"))
		if string(after) != string(before) {
			t.Errorf("config changed:\n%s", after)
		}
		if len(e.srv.Requests()) != 0 {
			t.Errorf("the server was asked %d times before the name was refused", len(e.srv.Requests()))
		}
	}
}
