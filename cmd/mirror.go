package cmd

import (
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
	"github.com/lxc/lxc-download/fetch/mirror"
)

// mirrorCommand is `lxc-download mirror`: copy images from an image server
// into a directory that a static web server serves (fetch/mirror).
func mirrorCommand(s IO) *cli.Command {
	flags := []cli.Flag{
		&cli.GenericFlag{Name: "dist", Aliases: []string{"d"}, Value: &listValue{}, Usage: "Only the distribution `DIST` (repeatable: any of them)"},
		&cli.GenericFlag{Name: "release", Aliases: []string{"r"}, Value: &listValue{}, Usage: "Only the release `RELEASE` (repeatable)"},
		&cli.GenericFlag{Name: "arch", Aliases: []string{"a"}, Value: &listValue{}, Usage: "Only the architecture `ARCH` (repeatable)"},
		&cli.GenericFlag{Name: "variant", Value: &listValue{}, Usage: "Only the variant `VARIANT` (repeatable)"},
		&cli.StringFlag{Name: "keep", Value: "1", Usage: "Mirror the newest `N` builds of each image that the source still offers"},
		&cli.BoolFlag{Name: "prune", Usage: "Remove the builds no published file names, after their grace period", DisableDefaultText: true},
		&cli.StringFlag{Name: "prune-grace", Value: "2h", Usage: "Keep a build no published file names for `DURATION` before --prune removes it (0: no wait)"},
		&cli.BoolFlag{Name: "dry-run", Usage: "Say what would be fetched, published and pruned, and change nothing", DisableDefaultText: true},
		&cli.BoolFlag{Name: "incus", Usage: "Also mirror the files Incus and LXD take for containers (not virtual machine disks)", DisableDefaultText: true},
		&cli.StringFlag{Name: "sign-key", TakesFile: true, Usage: "Publish indexes and streams of only the mirrored images, signed with this secret key `FILE`"},
		&cli.StringFlag{Name: "jobs", Value: strconv.Itoa(mirror.DefaultJobs), Usage: "Download `N` builds at once"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "Print only failures and the summary", DisableDefaultText: true},
		formatFlag(),
	}
	for _, name := range []string{"server", "keyid", "keyserver", "keyring", "ca-cert", "nameserver", "verbose",
		"max-index-age", "max-rootfs-size", "max-meta-size", "keep-free"} {
		flags = append(flags, templateFlag(name))
	}
	return &cli.Command{
		Name:      "mirror",
		Usage:     "Copy images from an image server into a directory a web server can serve",
		ArgsUsage: "[FILTER...] DEST",
		Description: "Mirrors the images that the filters choose (as list takes them; -d, -r, -a\n" +
			"and --variant may be repeated, and any of their values matches) into DEST,\n" +
			"in the image server's layout, for any static web server to serve. Every\n" +
			"file is verified before it appears in DEST; builds are put in place whole,\n" +
			"then the streams, then the indexes with their signatures. A rerun fetches\n" +
			"only what changed and resumes partial downloads, which wait in\n" +
			"DEST/" + mirror.WorkDir + " (mode 0700; web servers must refuse dot paths).\n" +
			"The source's signed indexes and streams are published as they are, and\n" +
			"only once every build they name for the mirrored images is in DEST; with\n" +
			"--sign-key they list only the mirrored builds and are signed with that key,\n" +
			"and clients trust it and the source's key (--keyring with both). Exit\n" +
			"status 1 when anything failed; --format json reports for monitoring.",
		Flags: flags,
		Action: func(c *cli.Context) error {
			mo, format, err := mirrorOptions(c, s)
			if err != nil {
				return err
			}
			rep, err := mirror.Run(c.Context, mo)
			if rep != nil {
				if format == "json" {
					enc := json.NewEncoder(s.Stdout)
					enc.SetIndent("", "  ")
					if jerr := enc.Encode(rep); jerr != nil && err == nil {
						err = jerr
					}
				} else {
					fmt.Fprintf(s.Stdout, "Summary: %s\n", rep.Summary())
				}
			}
			return err
		},
	}
}

// mirrorOptions reads the mirror command's flags and arguments into
// mirror.Options, setting up the keys as a template run would.
func mirrorOptions(c *cli.Context, s IO) (mirror.Options, string, error) {
	var mo mirror.Options
	format, err := checkFormat(c)
	if err != nil {
		return mo, "", err
	}
	args := c.Args().Slice()
	if len(args) == 0 {
		return mo, "", usageErrorf("mirror needs the destination directory as its last argument")
	}
	mo.Dest = args[len(args)-1]
	if mo.Filters, err = mirrorFilters(c, args[:len(args)-1]); err != nil {
		return mo, "", err
	}
	if mo.Keep, err = positiveInt("keep", c.String("keep")); err != nil {
		return mo, "", err
	}
	if mo.Jobs, err = positiveInt("jobs", c.String("jobs")); err != nil {
		return mo, "", err
	}
	grace := c.String("prune-grace")
	if grace == "0" || grace == "0s" {
		mo.PruneGrace = -1
	} else if mo.PruneGrace, err = parseDuration("prune-grace", grace, false); err != nil {
		return mo, "", err
	}
	mo.Prune, mo.DryRun, mo.Incus = c.Bool("prune"), c.Bool("dry-run"), c.Bool("incus")
	if path := c.String("sign-key"); path != "" {
		if mo.SignKey, err = fetch.ReadSigningKey(path); err != nil {
			return mo, "", err
		}
	}

	o, err := optionsFrom(mirrorFlagValues{c}, s)
	if err != nil {
		return mo, "", err
	}
	if len(o.Servers) > 1 {
		return mo, "", usageErrorf("mirror takes one --server, its source")
	}
	o.Quiet = c.Bool("quiet")
	r := &run{o: o, s: s, out: s.Stdout, warned: map[string]bool{}}
	log := s.Stdout
	if format == "json" {
		log = s.Stderr
	}
	if o.Quiet {
		log = io.Discard
	}
	r.out = io.Discard // the keyring's "Setting up" line is not a mirror's
	if mo.Source, err = r.fetchOptions(); err != nil {
		return mo, "", err
	}
	mo.Source.Progress, mo.Source.ProgressTerminal = nil, false
	if !o.Quiet {
		mo.Source.Progress = log
		mo.Source.ProgressTerminal = format == "text" && s.StdoutTerminal
	}
	if o.Verbose {
		mo.Source.Verbose = log
	}
	if mo.Source.Keyring, err = r.keyring(c.Context); err != nil {
		return mo, "", err
	}
	mo.Log, mo.Errors = log, s.Stderr
	return mo, format, nil
}

// mirrorFlagValues is the mirror command's flags as optionsFrom reads
// them: the image options are lists here, and are read by mirrorFilters.
type mirrorFlagValues struct{ c *cli.Context }

func (v mirrorFlagValues) Bool(name string) bool   { return v.c.Bool(name) }
func (v mirrorFlagValues) Generic(name string) any { return v.c.Generic(name) }
func (v mirrorFlagValues) IsSet(name string) bool {
	switch name {
	case "dist", "release", "arch", "variant":
		return false
	}
	return v.c.IsSet(name)
}

func (v mirrorFlagValues) String(name string) string {
	switch name {
	case "dist", "release", "arch":
		return ""
	case "variant":
		return "default"
	case "format":
		return "text"
	}
	return v.c.String(name)
}

// mirrorFilters are the filters of the arguments and of -d, -r, -a and
// --variant: each of these matches any of its values exactly (an
// architecture by the server's name for it: x86_64 is amd64), and all
// must hold.
func mirrorFilters(c *cli.Context, words []string) (compat.Filters, error) {
	args := append([]string(nil), words...)
	for _, key := range []string{"dist", "release", "arch", "variant"} {
		var values []string
		if l, ok := c.Generic(key).(*listValue); ok {
			values = *l
		}
		if len(values) == 0 {
			continue
		}
		var alts []string
		for _, v := range values {
			if v == "" {
				return nil, usageErrorf("--%s must not be empty", key)
			}
			if key == "arch" {
				if a, ok := compat.ServerArch(v); ok {
					v = a
				}
			}
			alts = append(alts, regexp.QuoteMeta(v))
		}
		args = append(args, key+"=^(?:"+strings.Join(alts, "|")+")$")
	}
	fs, err := compat.ParseFilters(args)
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	return fs, nil
}

// listValue is an option that may be given several times: each value is
// kept, in order.
type listValue []string

func (l *listValue) Set(v string) error { *l = append(*l, v); return nil }
func (l *listValue) String() string     { return strings.Join(*l, ",") }

// positiveInt reads the value of --flag, a whole number of at least 1.
func positiveInt(flag, s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 1000 {
		return 0, usageErrorf("--%s must be a whole number from 1 to 1000, not %q", flag, s)
	}
	return n, nil
}
