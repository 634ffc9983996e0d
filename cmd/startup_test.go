package cmd

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// signalProbeEnv, set in the environment of this test binary, makes
// TestSignalProbe run Main on each of its argument lists (separated by
// "|") and report, after each, whether os/signal's loop is running.
const signalProbeEnv = "LXC_DOWNLOAD_SIGNAL_PROBE"

// TestSignalsOnlyForARun checks that --help and a mistyped option start no
// signal handling (os/signal's loop goroutine, which blocks in a thread of
// its own, is start-up cost those runs have no use for), while a run does,
// so that an interrupted run still cleans up. Once started the loop never
// stops, so the probe runs in a fresh process, in the order given.
func TestSignalsOnlyForARun(t *testing.T) {
	if os.Getenv(signalProbeEnv) != "" {
		t.Skip("in the probe process")
	}
	cases := []struct {
		args string
		want string
	}{
		{"--help", "no"},
		{"--no-such-option", "no"},
		{"--format=yaml --list", "no"},
		{"-d debian -r bookworm -a amd64", "no"},
		// Run fails at once (no such rootfs), but it was run.
		{"--name c1 --path /nonexistent --rootfs /nonexistent/rootfs -d debian -r bookworm -a amd64", "yes"},
	}
	var lists []string
	for _, c := range cases {
		lists = append(lists, c.args)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSignalProbe$", "-test.v")
	cmd.Env = append(os.Environ(), signalProbeEnv+"="+strings.Join(lists, "|"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, out)
	}
	for _, c := range cases {
		line := "signal loop after " + c.args + ": " + c.want + "\n"
		if !strings.Contains(string(out), line) {
			t.Errorf("want %q in the probe's output:\n%s", line, out)
		}
	}
}

// TestSignalProbe is the probe process of TestSignalsOnlyForARun.
func TestSignalProbe(t *testing.T) {
	lists := os.Getenv(signalProbeEnv)
	if lists == "" {
		t.Skip("run by TestSignalsOnlyForARun")
	}
	for _, args := range strings.Split(lists, "|") {
		s, _, _ := testIO(nil)
		Main(append([]string{"lxc-download"}, strings.Fields(args)...), s)
		running := "no"
		if signalLoopRunning() {
			running = "yes"
		}
		// Printed, not logged: the parent looks for exactly this line.
		os.Stdout.WriteString("signal loop after " + args + ": " + running + "\n")
	}
}

// signalLoopRunning reports whether os/signal's loop goroutine, started by
// the first signal.Notify, is among this process's goroutines.
func signalLoopRunning() bool {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Contains(string(buf[:n]), "\nos/signal.loop(")
		}
		buf = make([]byte, 2*len(buf))
	}
}
