package cmd

import (
	"github.com/urfave/cli/v2"
)

// completionFlag, as the last argument, asks for the words that may come
// next instead of running anything: urfave/cli's protocol, which the bash
// and zsh completions of man/completion (and urfave/cli's own scripts)
// speak. It is the one argument a template run treats differently from
// before; lxc-create never passes it.
// (A constant: cli.BashCompletionFlag.Names() would run a regular
// expression at every start; a test keeps the two equal.)
const completionFlag = "--generate-bash-completion"

// complete prints the completions of the command line args, whose last
// word is the one being completed: commands for the first word, else the
// options of the command (or of the template run) for a word that starts
// with a dash, and nothing otherwise (the shell then completes file names).
func complete(args []string, s IO) int {
	app := newApp(s)
	var cmd *cli.Command
	cmds, done := app.Commands, 0
	for done < len(args)-1 {
		c := lookupCommand(cmds, args[done])
		if c == nil {
			break
		}
		cmd, cmds, done = c, c.Subcommands, done+1
	}
	current := ""
	if len(args) > 0 {
		current = args[len(args)-1]
	}
	isOption := len(current) > 0 && current[0] == '-'
	if !isOption && (done < len(args)-1 || (cmd != nil && len(cmd.Subcommands) == 0)) {
		return 0 // a value or an argument
	}
	ctx := cli.NewContext(app, nil, nil)
	ctx.Command = &cli.Command{Subcommands: cmds}
	if cmd != nil {
		c := *cmd
		c.Flags = append(append([]cli.Flag(nil), cmd.Flags...), helpFlag)
		cmd = &c
	} else {
		app.Flags = visibleFlags(app.Flags)
	}
	// urfave/cli reads the word being completed from os.Args, which is
	// the process's own command line here (a test runs the binary).
	cli.DefaultCompleteWithFlags(cmd)(ctx)
	return 0
}

// visibleFlags leaves out the hidden ones (urfave/cli's completion skips
// hidden switches only).
func visibleFlags(flags []cli.Flag) []cli.Flag {
	var out []cli.Flag
	for _, f := range flags {
		if vf, ok := f.(cli.VisibleFlag); !ok || vf.IsVisible() {
			out = append(out, f)
		}
	}
	return out
}
