package cmd_test

import (
	"os/exec"
	"regexp"
	"strconv"
	"testing"
)

// TestNothingBuiltAtInit: no package of this project builds a table, map
// or regular expression when the program starts: --help, a typo and every
// run would pay for it, and most never use it. (Package-level error values
// are a few bytes each.) The runtime's init trace gives each package's
// allocations.
func TestNothingBuiltAtInit(t *testing.T) {
	cmd := exec.Command(binary, "--help")
	cmd.Env = []string{"GODEBUG=inittrace=1"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	line := regexp.MustCompile(`init (github\.com/lxc/lxc-download/\S+) @\S+ ms, \S+ ms clock, (\d+) bytes`)
	found := 0
	for _, m := range line.FindAllStringSubmatch(string(out), -1) {
		found++
		if n, _ := strconv.Atoi(m[2]); n > 256 {
			t.Errorf("package %s allocates %d bytes at init", m[1], n)
		}
	}
	if found == 0 {
		t.Fatalf("no init of this project's packages traced: the test checks nothing\n%s", out)
	}
}
