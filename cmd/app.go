// Package cmd is the command line of lxc-download: it parses the arguments
// lxc-create (or a person) passes into a plain Options value and hands it to
// Run, which ties the compat, fetch and cache packages together.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

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
	if err := Run(ctx, opts, s); err != nil {
		fmt.Fprintf(s.Stderr, "ERROR: %s\n", errorText(err))
		return 1
	}
	return 0
}

// Parse reads the command line (args[0] is the program name) into Options.
// help is true when --help was asked for.
func Parse(args []string, s IO) (opts Options, help bool, err error) {
	app := newApp(s, &opts, &help)
	err = app.Run(args)
	return opts, help, err
}

func init() {
	// This program prints its own usage (the shell template's layout):
	// without this, urfave/cli answers -h/--help itself with its generated
	// help, whatever the App's HideHelp says.
	cli.HelpFlag = nil
}

// newApp builds the urfave/cli application. Its Action only fills opts: the
// work itself happens in Run, outside the CLI library.
func newApp(s IO, opts *Options, help *bool) *cli.App {
	return &cli.App{
		Name:            "lxc-download",
		Usage:           "LXC container image downloader",
		HideHelp:        true,
		HideHelpCommand: true,
		HideVersion:     true,
		Writer:          s.Stdout,
		ErrWriter:       s.Stderr,
		Flags:           flags(),
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return fmt.Errorf("%w: %s", errUsage, flagError(err))
		},
		Action: func(c *cli.Context) error {
			if c.Bool("help") {
				*help = true
				return nil
			}
			if c.NArg() > 0 {
				return fmt.Errorf("%w: unexpected argument %q", errUsage, c.Args().First())
			}
			o, err := optionsFrom(c, s)
			if err != nil {
				return err
			}
			*opts = o
			return nil
		},
	}
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

func flags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "help", Aliases: []string{"h"}},
		&cli.BoolFlag{Name: "list", Aliases: []string{"l"}},
		&cli.StringFlag{Name: "format", Value: "text"},
		&cli.StringFlag{Name: "dist", Aliases: []string{"d"}},
		&cli.StringFlag{Name: "release", Aliases: []string{"r"}},
		&cli.StringFlag{Name: "arch", Aliases: []string{"a"}},
		&cli.StringFlag{Name: "variant", Value: "default"},
		&cli.StringFlag{Name: "server", Value: DefaultServer},
		&cli.StringFlag{Name: "keyid"},
		&cli.StringFlag{Name: "keyserver"},
		&cli.StringFlag{Name: "keyring"},
		&cli.StringFlag{Name: "ca-cert"},
		&cli.StringFlag{Name: "nameserver"},
		&cli.BoolFlag{Name: "no-validate"},
		&cli.BoolFlag{Name: "flush-cache"},
		&cli.BoolFlag{Name: "force-cache"},
		&cli.BoolFlag{Name: "verbose"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}},
		&cli.StringFlag{Name: "name"},
		&cli.StringFlag{Name: "path"},
		&cli.StringFlag{Name: "rootfs"},
		&cli.StringFlag{Name: "mapped-uid"},
		&cli.StringFlag{Name: "mapped-gid"},
	}
}

// optionsFrom turns parsed flags into Options, checking what can be checked
// without touching the system.
func optionsFrom(c *cli.Context, s IO) (Options, error) {
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
