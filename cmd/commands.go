package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
)

// programName is the name the program goes by in help, completion and the
// man page, whatever argv[0] says.
const programName = "lxc-download"

// helpFlag is the -h/--help every command takes.
var helpFlag = &cli.BoolFlag{Name: "help", Aliases: []string{"h"}, Usage: "Show this help", DisableDefaultText: true}

// newApp is the whole command line as urfave/cli definitions: the template
// run's flags and the commands, whose actions write to s. It is run by
// runCommand, not by App.Run (see the package documentation).
func newApp(s IO) *cli.App {
	app := &cli.App{
		Name:      programName,
		Usage:     "LXC's download template, and tools around it",
		UsageText: programName + " [OPTIONS]\n" + programName + " COMMAND [OPTIONS] [ARGUMENTS...]",
		Description: "Without a command, " + programName + " is LXC's download template, what\n" +
			"lxc-create -t download runs: see " + programName + " --help for its options.\n" +
			"A command is recognised only as the first argument; a template run takes\n" +
			"options only, so lxc-create's arguments never name a command.",
		Flags:     templateFlags(),
		Writer:    s.Stdout,
		ErrWriter: s.Stderr,
		// The template's own flags are -h/--help and --version.
		HideHelp:    true,
		HideVersion: true,
	}
	app.Commands = []*cli.Command{
		listCommand(s),
		cacheCommand(s),
		localCommand(s),
		mirrorCommand(s),
		versionCommand(s),
		helpCommand(app),
	}
	return app
}

// runCommand runs the command args names (args[0] is the command): it finds
// it, parses its options by getopt's rules, and runs its action. A command
// with subcommands takes the subcommand as its next argument.
func runCommand(args []string, s IO) int {
	app := newApp(s)
	cmds, path := app.Commands, []string{app.Name}
	for {
		c := lookupCommand(cmds, args[0])
		if c == nil {
			report(s, unknownCommand(path, args[0], cmds), "\n"+helpHint(path))
			return 1
		}
		path, args = append(path, c.Name), args[1:]
		if len(c.Subcommands) == 0 {
			return runAction(app, c, path, args, s)
		}
		switch {
		case len(args) == 0:
			report(s, usageErrorf("%s needs a command: %s", strings.Join(path, " "), commandNames(c.Subcommands)), "\n"+helpHint(path))
			return 1
		case args[0] == "-h" || args[0] == "--help":
			writeCommandHelp(s.Stdout, path, c)
			return 0
		case !isCommandWord(args[0]):
			report(s, usageErrorf("%s takes a command first (%s), not %s", strings.Join(path, " "), commandNames(c.Subcommands), args[0]), "\n"+helpHint(path))
			return 1
		}
		cmds = c.Subcommands
	}
}

// runAction parses a command's options and runs its action. Signals are
// caught from then on, so an interrupted command releases its locks and
// temporary files.
func runAction(app *cli.App, c *cli.Command, path, args []string, s IO) int {
	root := cli.NewContext(app, nil, nil)
	ctx, err := parseFlags(append(append([]cli.Flag(nil), c.Flags...), helpFlag), args, root)
	if err != nil {
		report(s, err, "\n"+helpHint(path))
		return 1
	}
	if ctx.Bool("help") {
		writeCommandHelp(s.Stdout, path, c)
		return 0
	}
	ctx.Command = c
	sig, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer stop()
	ctx.Context = sig
	err = c.Action(ctx)
	if err == nil {
		return 0
	}
	report(s, err, "\n"+helpHint(path))
	var coder cli.ExitCoder
	if errors.As(err, &coder) && coder.ExitCode() != 0 {
		return coder.ExitCode()
	}
	return exitStatus(err)
}

// lookupCommand finds the command called name (or one of its aliases).
func lookupCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// unknownCommand is the error for a first argument that names no command:
// it says what the commands are, and that a template run takes options
// only (the argument may have been meant as one of its values).
func unknownCommand(path []string, name string, cmds []*cli.Command) error {
	if len(path) == 1 {
		return usageErrorf("unknown command %q (commands: %s; a template run takes options only)", name, commandNames(cmds))
	}
	return usageErrorf("unknown command %q for %s (commands: %s)", name, strings.Join(path, " "), commandNames(cmds))
}

// commandNames lists the visible commands, for messages.
func commandNames(cmds []*cli.Command) string {
	var names []string
	for _, c := range cmds {
		if !c.Hidden {
			names = append(names, c.Name)
		}
	}
	return strings.Join(names, ", ")
}

// helpHint says where the usage of the command at path is.
func helpHint(path []string) string {
	if len(path) == 1 {
		return fmt.Sprintf("Run '%s help' for the commands, and '%s --help' for the template's options.\n", programName, programName)
	}
	return fmt.Sprintf("Run '%s --help' for its usage.\n", strings.Join(path, " "))
}

// helpCommand prints the overview, or the help of the command its arguments
// name.
func helpCommand(app *cli.App) *cli.Command {
	return &cli.Command{
		Name:      "help",
		Usage:     "Show the commands, or the help of one",
		ArgsUsage: "[COMMAND...]",
		Action: func(c *cli.Context) error {
			args := c.Args().Slice()
			if len(args) == 0 {
				writeOverview(app.Writer, app)
				return nil
			}
			cmds, path := app.Commands, []string{app.Name}
			for i, a := range args {
				cmd := lookupCommand(cmds, a)
				if cmd == nil {
					return unknownCommand(path, a, cmds)
				}
				path = append(path, cmd.Name)
				if i == len(args)-1 || len(cmd.Subcommands) == 0 {
					if i != len(args)-1 {
						return usageErrorf("%s has no command %q", strings.Join(path, " "), args[i+1])
					}
					writeCommandHelp(app.Writer, path, cmd)
					return nil
				}
				cmds = cmd.Subcommands
			}
			return nil
		},
	}
}
