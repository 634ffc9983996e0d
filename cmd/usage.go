package cmd

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
)

// templateUsage is what --help prints: the shell template's layout (people,
// scripts and LuCI know it, and it stays as it was byte for byte), made
// from templateOptions and environment, as the man page is.
func templateUsage() string {
	var b strings.Builder
	b.WriteString("LXC container image downloader\n")
	section := ""
	for _, o := range templateOptions {
		cf := o.flag.(cli.CategorizableFlag)
		if !cf.IsVisible() {
			continue
		}
		if cf.GetCategory() != section {
			section = cf.GetCategory()
			fmt.Fprintf(&b, "\n%s:\n", section)
		}
		prefix := "[ " + strings.Join(typedNames(o.flag), " | ")
		if o.arg != "" {
			prefix += " <" + o.arg + ">"
		}
		writeHanging(&b, prefix+" ]: ", usageWithDefault(o.flag))
	}
	b.WriteString("\nEnvironment variables:\n")
	for _, e := range environment {
		writeHanging(&b, e.names+": ", e.usage)
	}
	return b.String()
}

// typedNames are f's names as typed, the one-letter ones first: -d, --dist.
func typedNames(f cli.Flag) []string {
	names := append([]string(nil), f.Names()...)
	sort.SliceStable(names, func(i, j int) bool { return len(names[i]) == 1 && len(names[j]) > 1 })
	for i, n := range names {
		if len(n) == 1 {
			names[i] = "-" + n
		} else {
			names[i] = "--" + n
		}
	}
	return names
}

// usageWithDefault is f's usage followed by its default value, if it has
// one, the way urfave/cli's help shows it.
func usageWithDefault(f cli.Flag) string {
	df := f.(cli.DocGenerationFlag)
	u := df.GetUsage()
	if _, isBool := f.(*cli.BoolFlag); !isBool && df.GetDefaultText() != "" {
		u += " (default: " + df.GetDefaultText() + ")"
	}
	return u
}

// writeHanging writes prefix and text, the lines of text after the first
// indented to line up under the first.
func writeHanging(b *strings.Builder, prefix, text string) {
	lines := strings.Split(text, "\n")
	b.WriteString(prefix + lines[0] + "\n")
	for _, l := range lines[1:] {
		b.WriteString(strings.Repeat(" ", len(prefix)) + l + "\n")
	}
}

// writeOverview is the help of the program as a whole: what
// "lxc-download help" prints.
func writeOverview(w io.Writer, app *cli.App) {
	fmt.Fprintf(w, "NAME:\n   %s - %s\n\nUSAGE:\n%s\n", app.Name, app.Usage, indent(app.UsageText))
	fmt.Fprintf(w, "DESCRIPTION:\n%s\n", indent(app.Description))
	writeCommandList(w, app.Commands)
	fmt.Fprintf(w, "Run '%s COMMAND --help' for the usage of a command, and '%s --help'\nfor the options of the template run.\n", app.Name, app.Name)
}

// writeCommandHelp is the help of the command at path ("lxc-download",
// "cache", "flush"), in urfave/cli's layout.
func writeCommandHelp(w io.Writer, path []string, c *cli.Command) {
	fmt.Fprintf(w, "NAME:\n   %s - %s\n\nUSAGE:\n%s\n", strings.Join(path, " "), c.Usage, indent(commandUsage(path, c)))
	if c.Description != "" {
		fmt.Fprintf(w, "DESCRIPTION:\n%s\n", indent(c.Description))
	}
	if len(c.Subcommands) > 0 {
		writeCommandList(w, c.Subcommands)
		return
	}
	fmt.Fprintf(w, "OPTIONS:\n")
	tw := tabwriter.NewWriter(w, 1, 8, 2, ' ', 0)
	for _, f := range append(append([]cli.Flag(nil), c.Flags...), helpFlag) {
		if vf, ok := f.(cli.VisibleFlag); ok && !vf.IsVisible() {
			continue
		}
		fmt.Fprintf(tw, "   %s\n", cli.FlagStringer(f))
	}
	tw.Flush()
}

// commandUsage is the usage line of the command at path.
func commandUsage(path []string, c *cli.Command) string {
	if c.UsageText != "" {
		return c.UsageText
	}
	u := strings.Join(path, " ")
	if len(c.Subcommands) > 0 {
		return u + " COMMAND [OPTIONS]"
	}
	u += " [OPTIONS]"
	if c.ArgsUsage != "" {
		u += " " + c.ArgsUsage
	}
	return u
}

// writeCommandList lists commands with their usage.
func writeCommandList(w io.Writer, cmds []*cli.Command) {
	fmt.Fprintf(w, "COMMANDS:\n")
	tw := tabwriter.NewWriter(w, 1, 8, 2, ' ', 0)
	for _, c := range cmds {
		if !c.Hidden {
			fmt.Fprintf(tw, "   %s\t%s\n", c.Name, c.Usage)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
}

// indent indents each line of text by three spaces and ends it with a
// newline.
func indent(text string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if l == "" {
			b.WriteString("\n")
			continue
		}
		b.WriteString("   " + l + "\n")
	}
	return b.String()
}
