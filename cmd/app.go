// Package cmd is the command line of lxc-download: it parses the arguments
// lxc-create (or a person) passes into a plain Options value and hands it to
// Run, which ties the compat, fetch and cache packages together.
package cmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/lxc/lxc-download/fetch"
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

// Main runs the program with args (args[0] is the program name) and returns
// the process exit status: 0 on success, 1 on any error, after writing one
// "ERROR: ..." line to s.Stderr.
func Main(args []string, s IO) int {
	opts, help, err := Parse(args, s)
	if err != nil {
		fmt.Fprintf(s.Stderr, "ERROR: %s\n", strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
		if errors.Is(err, errUsage) {
			fmt.Fprint(s.Stderr, "\n"+usageText)
		}
		return 1
	}
	if help {
		fmt.Fprint(s.Stdout, usageText)
		return 0
	}
	// Signals are caught only for a run: signal.Notify starts a goroutine
	// that takes a thread of its own, which --help and a mistyped option
	// have no use for (until then nothing is written, so being killed
	// outright is harmless).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := Run(ctx, opts, s); err != nil {
		fmt.Fprintf(s.Stderr, "ERROR: %s\n", errorText(err))
		return 1
	}
	return 0
}

// Parse reads the command line (args[0] is the program name) into Options.
// help is true when --help was asked for.
//
// The standard flag package reads it, as urfave/cli did: -x, --x, --x=v
// and --x v alike, up to the first argument that is not an option.
// (urfave/cli's help templates made the linker keep every exported method
// of every type, 2.5 MB of the binary.)
func Parse(args []string, s IO) (opts Options, help bool, err error) {
	fs := flag.NewFlagSet("lxc-download", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	p := parsedFlags{bools: map[string]*bool{}, strings: map[string]*string{}, set: map[string]bool{}}
	alias := map[string]string{}
	for _, o := range options {
		names := append([]string{o.name}, o.aliases...)
		for _, n := range names {
			alias[n] = o.name
		}
		if o.isBool {
			v := new(bool)
			p.bools[o.name] = v
			for _, n := range names {
				fs.BoolVar(v, n, false, "")
			}
			continue
		}
		v := new(string)
		p.strings[o.name] = v
		for _, n := range names {
			fs.StringVar(v, n, o.def, "")
		}
	}
	if len(args) > 0 {
		args = args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return opts, false, fmt.Errorf("%w: %s", errUsage, flagError(err))
	}
	fs.Visit(func(f *flag.Flag) { p.set[alias[f.Name]] = true })
	if p.Bool("help") {
		return opts, true, nil
	}
	if fs.NArg() > 0 {
		return opts, false, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if opts, err = optionsFrom(&p, s); err != nil {
		return Options{}, false, err
	}
	return opts, false, nil
}

// flagError rewords the flag package's messages, which name long options
// with a single dash.
func flagError(err error) string {
	m := err.Error()
	if rest, ok := strings.CutPrefix(m, "flag provided but not defined: -"); ok {
		if len(rest) > 1 {
			return "unknown option --" + rest
		}
		return "unknown option -" + rest
	}
	if rest, ok := strings.CutPrefix(m, "flag needs an argument: -"); ok {
		if len(rest) > 1 {
			return "option --" + rest + " needs a value"
		}
		return "option -" + rest + " needs a value"
	}
	return m
}

// option is one command-line option: its long name, its one-letter
// aliases, and whether it is a switch or takes a value (default def).
type option struct {
	name    string
	aliases []string
	isBool  bool
	def     string
}

// options are the options the program accepts; usageText and the man
// page document them.
var options = []option{
	{name: "help", aliases: []string{"h"}, isBool: true},
	{name: "list", aliases: []string{"l"}, isBool: true},
	{name: "format", def: "text"},
	{name: "dist", aliases: []string{"d"}},
	{name: "release", aliases: []string{"r"}},
	{name: "arch", aliases: []string{"a"}},
	{name: "variant", def: "default"},
	{name: "server", def: DefaultServer},
	{name: "keyid"},
	{name: "keyserver"},
	{name: "keyring"},
	{name: "ca-cert"},
	{name: "nameserver"},
	{name: "no-validate", isBool: true},
	{name: "flush-cache", isBool: true},
	{name: "force-cache", isBool: true},
	{name: "verbose", isBool: true},
	{name: "quiet", aliases: []string{"q"}, isBool: true},
	{name: "name"},
	{name: "path"},
	{name: "rootfs"},
	{name: "mapped-uid"},
	{name: "mapped-gid"},
}

// parsedFlags are the values of one command line by long option name.
type parsedFlags struct {
	bools   map[string]*bool
	strings map[string]*string
	set     map[string]bool // given on the command line, by any of its names
}

func (p *parsedFlags) Bool(name string) bool     { return *p.bools[name] }
func (p *parsedFlags) String(name string) string { return *p.strings[name] }
func (p *parsedFlags) IsSet(name string) bool    { return p.set[name] }

// optionsFrom turns parsed flags into Options, checking what can be checked
// without touching the system.
func optionsFrom(c *parsedFlags, s IO) (Options, error) {
	o := Options{
		List:       c.Bool("list"),
		Format:     c.String("format"),
		Dist:       c.String("dist"),
		Release:    c.String("release"),
		Arch:       c.String("arch"),
		Variant:    c.String("variant"),
		VariantSet: c.IsSet("variant"),
		Server:     c.String("server"),
		KeyID:      c.String("keyid"),
		Keyserver:  c.String("keyserver"),
		Keyring:    c.String("keyring"),
		CACert:     c.String("ca-cert"),
		Validate:   !c.Bool("no-validate"),
		FlushCache: c.Bool("flush-cache"),
		ForceCache: c.Bool("force-cache"),
		Verbose:    c.Bool("verbose"),
		Quiet:      c.Bool("quiet"),
		Name:       c.String("name"),
		Path:       c.String("path"),
		Rootfs:     c.String("rootfs"),
		MappedUID:  -1,
		MappedGID:  -1,
		CachePath:  s.getenv("LXC_CACHE_PATH"),
		Home:       s.getenv("HOME"),
	}
	if o.Keyserver == "" {
		o.Keyserver = s.getenv("DOWNLOAD_KEYSERVER")
	}
	ns := c.String("nameserver")
	if ns == "" {
		ns = s.getenv("DOWNLOAD_NAMESERVER")
	}
	for _, n := range strings.FieldsFunc(ns, func(r rune) bool { return r == ',' || r == ' ' }) {
		if _, err := fetch.ParseNameserver(n); err != nil {
			return o, fmt.Errorf("%w: --nameserver: %v", errUsage, err)
		}
		o.Nameservers = append(o.Nameservers, n)
	}
	var err error
	if o.MappedUID, err = mappedID("mapped-uid", c.String("mapped-uid")); err != nil {
		return o, err
	}
	if o.MappedGID, err = mappedID("mapped-gid", c.String("mapped-gid")); err != nil {
		return o, err
	}
	if o.Format != "text" && o.Format != "json" {
		return o, fmt.Errorf("%w: --format must be text or json, not %q", errUsage, o.Format)
	}
	if o.Variant == "" {
		return o, fmt.Errorf("%w: --variant must not be empty", errUsage)
	}
	if o.Server == "" {
		return o, fmt.Errorf("%w: --server must not be empty", errUsage)
	}
	if o.Verbose && o.Quiet {
		return o, fmt.Errorf("%w: --verbose and --quiet exclude each other", errUsage)
	}
	if o.FlushCache && o.ForceCache {
		return o, fmt.Errorf("%w: --flush-cache and --force-cache exclude each other", errUsage)
	}
	return o, nil
}

// mappedID parses a --mapped-uid/--mapped-gid value; empty and -1 both mean
// "no map", as in the shell template.
func mappedID(flag, v string) (int, error) {
	if v == "" || v == "-1" {
		return -1, nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return -1, fmt.Errorf("%w: --%s must be a numeric id or -1, not %q", errUsage, flag, v)
	}
	return int(n), nil
}
