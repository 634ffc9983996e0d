package cmd_test

// The template run's command line against what it was: the real binary on
// argument lists whose outputs were recorded from the binary of the
// previous command line (the standard flag package), and against what the
// shell template's getopt makes of the forms that binary did not read.

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// todayFile holds the recorded outputs. To record them again with another
// binary: LXC_DOWNLOAD_RECORD_TODAY=/path/to/binary go test -run TestTemplateAsToday ./cmd/
const todayFile = "testdata/template-today.json"

// todayArgs are the argument lists recorded: everything a template run can
// answer without a server (help, and each error in the arguments).
var todayArgs = [][]string{
	{"-h"},
	{"--help"},
	{"-h", "-d", "debian"},
	{"-d", "debian", "--help"},
	{"-h", "extra"},
	{"--bogus"},
	{"--bogus=1"},
	{"-z"},
	{"-d"},
	{"--dist"},
	{"-l", "--rootfs"},
	{"--mapped-uid", "root"},
	{"--mapped-gid=x"},
	{"-l", "extra"},
	{"-l", "--", "extra"},
	{"-l", "--format=xml"},
	{"-l", "--format", "yaml"},
	{"-l", "--variant="},
	{"-l", "--server="},
	{"--flush-cache", "--force-cache"},
	{"--verbose", "-q"},
	{"-l", "--nameserver", "dns.example"},
	{},
	{"--name=c1", "-d", "debian", "-r", "x", "-a", "amd64"},
	{"--name", "c1", "--path", "/nonexistent"},
	{"--path=/x", "--rootfs=/x/rootfs"},
	{"--name", "c1", "list"},
	{"--name", "c1", "--path", "/p", "--rootfs", "/r", "version"},
	{"-l", "-", "x"},
}

// recorded is one argument list's outputs.
type recorded struct {
	Args   []string `json:"args"`
	Code   int      `json:"code"`
	Stdout string   `json:"stdout"`
	Stderr string   `json:"stderr"`
}

// runBinary runs prog with args in a clean environment and no terminal.
func runBinary(t *testing.T, prog string, env []string, args ...string) recorded {
	t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LXC_CACHE_PATH=" + t.TempDir()}, env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := recorded{Args: args, Stdout: out.String(), Stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestTemplateAsToday runs the binary on todayArgs and compares stdout,
// stderr and the exit status with the recorded ones, byte for byte.
func TestTemplateAsToday(t *testing.T) {
	if old := os.Getenv("LXC_DOWNLOAD_RECORD_TODAY"); old != "" {
		var all []recorded
		for _, args := range todayArgs {
			all = append(all, runBinary(t, old, nil, args...))
		}
		b, err := json.MarshalIndent(all, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(todayFile, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Skipf("recorded %s from %s", todayFile, old)
	}
	b, err := os.ReadFile(todayFile)
	if err != nil {
		t.Fatal(err)
	}
	var want []recorded
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(todayArgs) {
		t.Fatalf("%s has %d argument lists, the test %d: record it again", todayFile, len(want), len(todayArgs))
	}
	for _, w := range want {
		t.Run(strings.Join(w.Args, " "), func(t *testing.T) {
			got := runBinary(t, binary, nil, w.Args...)
			if got.Code != w.Code || got.Stdout != w.Stdout || got.Stderr != w.Stderr {
				t.Errorf("got exit %d\n--- stdout\n%s--- stderr\n%s\nwant exit %d\n--- stdout\n%s--- stderr\n%s",
					got.Code, got.Stdout, got.Stderr, w.Code, w.Stdout, w.Stderr)
			}
		})
	}
}
