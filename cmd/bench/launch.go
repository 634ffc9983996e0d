package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// childRun, as the first argument, makes this program a launcher:
// childRun PROGRAM ARGS... runs the program and writes its wall time, peak
// RSS and CPU time to file descriptor 3.
//
// The launcher exists because a child's peak RSS is not its own alone:
// Linux starts a child made with vfork (as Go's os/exec makes them) with
// the peak of the parent it shares memory with until exec, and this
// driver, which serves the image from memory, is large. A freshly started
// launcher is a few megabytes, so what it reports is the program's figure.
const childRun = "-child-run"

func launchChild(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: bench", childRun, "PROGRAM ARGS...")
		return 2
	}
	report := os.NewFile(3, "report")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	ps := cmd.ProcessState
	fmt.Fprintf(report, "%d %d %d\n", wall.Nanoseconds(), maxRSS(ps), (ps.UserTime() + ps.SystemTime()).Nanoseconds())
	report.Close()
	return cmd.ProcessState.ExitCode()
}

// launched runs cmd through the launcher and returns what it measured of
// the program.
func launched(self string, cmd *exec.Cmd) (sample, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return sample{}, err
	}
	defer r.Close()
	cmd.Args = append([]string{self, childRun, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = self
	cmd.ExtraFiles = []*os.File{w}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return sample{}, err
	}
	var buf [64]byte
	n, _ := r.Read(buf[:])
	if err := cmd.Wait(); err != nil {
		return sample{}, err
	}
	f := strings.Fields(string(buf[:n]))
	if len(f) != 3 {
		return sample{}, errors.New("the launcher reported nothing")
	}
	var v [3]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i], 10, 64); err != nil {
			return sample{}, fmt.Errorf("launcher report %q: %w", f, err)
		}
	}
	return sample{wall: time.Duration(v[0]), rss: v[1], cpu: time.Duration(v[2])}, nil
}

// maxRSS is the peak resident set of a finished child and the children it
// waited for, in bytes.
func maxRSS(ps *os.ProcessState) int64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return int64(ru.Maxrss) * 1024 // kilobytes on Linux
	}
	return 0
}
