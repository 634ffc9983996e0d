// Package cmd is the command line of lxc-download: it parses the arguments
// lxc-create (or a person) passes into a plain Options value and hands it to
// Run, which ties the compat, fetch and cache packages together; and it
// holds the commands that grow around the template (list, cache, version).
//
// The command line is defined with urfave/cli/v2 (flags, commands,
// contexts, completion, and the man page and fish completion that man/gen
// makes from the same definitions), but dispatched here rather than by
// cli.App.Run: App.Run reaches urfave/cli's text/template help printer,
// whose reflection makes the linker keep every exported method of the
// program (2.4 MB of the binary), and it reads argv differently from the
// shell template's getopt. See README "Size and start-up".
package cmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/lxc/lxc-download/compat"
)

// IO is where a run reads answers and writes its messages. Tests give it
// buffers; the binary gives it the process's standard streams.
type IO struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Interactive reports whether Stdin is a terminal a person can answer
	// the Distribution/Release/Architecture questions on.
	Interactive bool
	// StdoutTerminal reports whether Stdout is a terminal: progress is then
	// drawn as bars, else written as plain lines for logs.
	StdoutTerminal bool
	// Getenv looks up environment variables; nil means os.Getenv.
	Getenv func(string) string
}

// Stdio returns the process's own standard streams.
func Stdio() IO {
	return IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Interactive: isTerminal(os.Stdin), StdoutTerminal: isTerminal(os.Stdout)}
}

func (s IO) getenv(k string) string {
	if s.Getenv != nil {
		return s.Getenv(k)
	}
	return os.Getenv(k)
}

// errUsage marks an error in the arguments themselves: it is reported with
// the usage text, as the shell template did.
var errUsage = errors.New("usage")

// usageErrorf is an error in the arguments, worded by format.
func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// Request is what a template run's command line asks for.
type Request int

// The requests of a template run's command line.
const (
	// RunRequest: list the images, or create (the Options say which).
	RunRequest Request = iota
	// HelpRequest: -h or --help, which wins over everything else.
	HelpRequest
	// VersionRequest: --version.
	VersionRequest
)

// Main runs the program with args (args[0] is the program name) and returns
// the process exit status: 0 on success, 1 on any error, after writing one
// "ERROR: ..." line to s.Stderr.
//
// A command (list, cache, local, version, help) is recognised only as the
// first argument; every other command line is a template run, which takes
// options only. lxc-create passes options only, so no command can capture
// one of its runs.
//
// Called lxc-local (args[0], a link or copy under LXC's name for its
// local template), the program is the local command.
func Main(args []string, s IO) int {
	if len(args) > 0 && filepath.Base(args[0]) == localProgramName {
		args = append([]string{args[0], "local"}, args[1:]...)
	}
	var rest []string
	if len(args) > 1 {
		rest = args[1:]
	}
	if n := len(rest); n > 0 && rest[n-1] == completionFlag {
		return complete(rest[:n-1], s)
	}
	if len(rest) > 0 && isCommandWord(rest[0]) {
		return runCommand(rest, s)
	}
	return runTemplate(args, s)
}

// isCommandWord reports whether a first argument names a command (or is a
// mistyped one) rather than starting a template run's options.
func isCommandWord(a string) bool {
	return a != "" && a[0] != '-'
}

// runTemplate is the template run: what lxc-create runs.
func runTemplate(args []string, s IO) int {
	opts, req, err := Parse(args, s)
	if err != nil {
		report(s, err, "\n"+usageText)
		return 1
	}
	switch req {
	case HelpRequest:
		io.WriteString(s.Stdout, usageText)
		return 0
	case VersionRequest:
		if err := writeVersion(s.Stdout, "text"); err != nil {
			report(s, err, "")
			return 1
		}
		return 0
	}
	// Signals are caught only for a run: signal.Notify starts a goroutine
	// that takes a thread of its own, which --help and a mistyped option
	// have no use for (until then nothing is written, so being killed
	// outright is harmless).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer stop()
	if err := Run(ctx, opts, s); err != nil {
		report(s, err, "")
		return exitStatus(err)
	}
	return 0
}

// report writes err as the one ERROR line, followed by usage when err is
// an error in the arguments.
func report(s IO, err error, usage string) {
	msg := errorText(err)
	if errors.Is(err, errUsage) {
		msg = strings.TrimPrefix(msg, errUsage.Error()+": ")
	}
	fmt.Fprintf(s.Stderr, "ERROR: %s\n", msg)
	if errors.Is(err, errUsage) {
		fmt.Fprint(s.Stderr, usage)
	}
	// What is on offer, after an image that is not: lines of their own,
	// not errors.
	var hinted interface{ Hints() []string }
	if errors.As(err, &hinted) {
		for _, h := range hinted.Hints() {
			fmt.Fprintln(s.Stderr, compat.PrintableLine(h))
		}
	}
}

// Parse reads a template run's command line (args[0] is the program name)
// into Options, by the shell template's getopt rules (see normalize). It
// also makes the checks the shell template made before its first download:
// that there is a container, or a rootfs alone, to create (or --list).
func Parse(args []string, s IO) (opts Options, req Request, err error) {
	if len(args) > 0 {
		args = args[1:]
	}
	c, err := parseFlags(templateFlags(), args, nil)
	if err != nil {
		return opts, RunRequest, err
	}
	if c.Bool("help") {
		return opts, HelpRequest, nil
	}
	if c.Bool("version") {
		return opts, VersionRequest, nil
	}
	if c.NArg() > 0 {
		return opts, RunRequest, usageErrorf("unexpected argument %q", c.Args().First())
	}
	if opts, err = optionsFrom(c, s); err != nil {
		return Options{}, RunRequest, err
	}
	if err := checkContainerArgs(opts); err != nil {
		return Options{}, RunRequest, err
	}
	return opts, RunRequest, nil
}

// parseFlags parses args (normalised first) with flags, into a context
// below parent.
func parseFlags(flags []cli.Flag, args []string, parent *cli.Context) (*cli.Context, error) {
	canon, err := normalize(args, specOf(flags))
	if err != nil {
		return nil, err
	}
	set := flag.NewFlagSet("lxc-download", flag.ContinueOnError)
	set.SetOutput(io.Discard)
	set.Usage = func() {}
	for _, f := range flags {
		if err := f.Apply(set); err != nil {
			return nil, err
		}
	}
	if err := set.Parse(canon); err != nil {
		return nil, usageErrorf("%s", flagError(err))
	}
	var app *cli.App
	if parent != nil {
		app = parent.App
	}
	return cli.NewContext(app, set, parent), nil
}

// flagError rewords the flag package's messages, which name long options
// with a single dash. After normalize, only a value the flag's type cannot
// take gets here.
func flagError(err error) string {
	m := err.Error()
	if rest, ok := strings.CutPrefix(m, "invalid value "); ok {
		return "invalid value " + strings.Replace(rest, " for flag -", " for --", 1)
	}
	if rest, ok := strings.CutPrefix(m, "invalid boolean value "); ok {
		return "invalid value " + strings.Replace(rest, " for -", " for --", 1)
	}
	return m
}
