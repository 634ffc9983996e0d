package cmd

import (
	"bytes"
	"strings"

	"github.com/urfave/cli/v2"
)

// Manual is the command line as the man page generator (man/gen) reads it:
// the definitions that parse the arguments and print the help, so that the
// page and the help cannot disagree. The program itself never builds one.
type Manual struct {
	// App holds the template run's flags (App.Flags, their usage on one
	// line) and the commands (App.Commands), as urfave/cli definitions:
	// urfave/cli's ToFishCompletion works on it.
	App *cli.App
	// Options are the template run's options, in --help order.
	Options []ManualOption
	// Environment are the variables --help lists.
	Environment []ManualEnv
	// Usage is what --help prints.
	Usage string
	// Commands are every command, subcommands after their parent, as
	// their help shows them.
	Commands []ManualCommand
}

// ManualCommand is one command as its help shows it.
type ManualCommand struct {
	// Path names it: "lxc-download", "cache", "flush".
	Path []string
	// Usage is its one-line summary; UsageLine how it is called.
	Usage, UsageLine string
	// Description is its longer text, lines broken as its help breaks them.
	Description string
	// Options are its options as its help lists them; Subcommands names
	// its subcommands, which take the options instead.
	Options     []ManualFlag
	Subcommands []string
}

// ManualFlag is one option of a command: its names with their placeholder
// (--dist DIST, -d DIST), and its usage with its default.
type ManualFlag struct {
	Names, Usage string
}

// ManualOption is one option of the template run.
type ManualOption struct {
	// Name is the long name, without dashes: the key of the man page's
	// further text about it.
	Name string
	// Typed are its names as typed, one-letter ones first: "-d", "--dist".
	Typed []string
	// Arg is what --help shows in angle brackets after it; empty for a
	// switch.
	Arg string
	// Section is the --help section it is listed in.
	Section string
	// Usage is its --help text, on one line, with its default.
	Usage string
	// Hidden options are accepted but not in --help.
	Hidden bool
}

// ManualEnv is one environment variable (or a group of them) of --help.
type ManualEnv struct {
	Names string // such as "http_proxy, https_proxy, no_proxy"
	Usage string // its --help text, on one line
}

// NewManual describes the command line for the man page generator.
func NewManual() Manual {
	app := newApp(IO{})
	app.Flags = nil
	m := Manual{App: app, Usage: templateUsage()}
	for _, o := range templateOptions {
		cf := o.flag.(cli.CategorizableFlag)
		app.Flags = append(app.Flags, oneLine(o.flag))
		m.Options = append(m.Options, ManualOption{
			Name:    o.flag.Names()[0],
			Typed:   typedNames(o.flag),
			Arg:     o.arg,
			Section: cf.GetCategory(),
			Usage:   joinLines(usageWithDefault(o.flag)),
			Hidden:  !cf.IsVisible(),
		})
	}
	for _, e := range environment {
		m.Environment = append(m.Environment, ManualEnv{Names: e.names, Usage: joinLines(e.usage)})
	}
	m.Commands = manualCommands([]string{app.Name}, app.Commands)
	return m
}

// manualCommands flattens the command tree below path.
func manualCommands(path []string, cmds []*cli.Command) []ManualCommand {
	var out []ManualCommand
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		p := append(append([]string(nil), path...), c.Name)
		mc := ManualCommand{Path: p, Usage: c.Usage, UsageLine: commandUsage(p, c), Description: c.Description}
		for _, sub := range c.Subcommands {
			mc.Subcommands = append(mc.Subcommands, sub.Name)
		}
		if len(c.Subcommands) == 0 {
			for _, f := range append(append([]cli.Flag(nil), c.Flags...), helpFlag) {
				names, usage, _ := strings.Cut(cli.FlagStringer(f), "\t")
				mc.Options = append(mc.Options, ManualFlag{Names: names, Usage: usage})
			}
		}
		out = append(append(out, mc), manualCommands(p, c.Subcommands)...)
	}
	return out
}

// CommandHelp is what `lxc-download PATH... --help` prints, such as
// CommandHelp("cache", "flush"); with no path, what `lxc-download help`
// prints. It is "" for a path that names no command.
func CommandHelp(path ...string) string {
	var b bytes.Buffer
	app := newApp(IO{Stdout: &b})
	if len(path) == 0 {
		writeOverview(&b, app)
		return b.String()
	}
	cmds, full := app.Commands, []string{app.Name}
	var c *cli.Command
	for _, name := range path {
		if c = lookupCommand(cmds, name); c == nil {
			return ""
		}
		full, cmds = append(full, c.Name), c.Subcommands
	}
	writeCommandHelp(&b, full, c)
	return b.String()
}

func joinLines(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
