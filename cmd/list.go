package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
)

// listCommand is `lxc-download list`: the images on the server, from its
// simplestreams where it publishes them (every retained build, sizes,
// aliases), else from its index, filtered and in the format asked for.
func listCommand(s IO) *cli.Command {
	flags := append(imageFlags(), listFormatFlag(),
		&cli.BoolFlag{Name: "all-builds", Usage: "List every build the server retains, not only the newest", DisableDefaultText: true})
	return &cli.Command{
		Name:      "list",
		Usage:     "List the images on the image server",
		ArgsUsage: "[FILTER...]",
		Description: "Lists the images a template run can create: those of the server's signed\n" +
			"index, with what its simplestreams (streams/v1/images.json) add: OS\n" +
			"titles, aliases, the rootfs's size and sha256, and, with --all-builds,\n" +
			"every build the server retains (for --build). A server without\n" +
			"simplestreams is listed from its index, and a line on stderr says which\n" +
			"fields are missing.\n" +
			"\n" +
			"An image must match every FILTER. A word without \"=\" matches an image\n" +
			"whose name (DIST/RELEASE/ARCH/VARIANT) or one of whose aliases contains\n" +
			"it. KEY=REGEXP matches an image whose property KEY matches the regular\n" +
			"expression (Go syntax) as a whole, unless it holds ^ or $ itself. KEY is\n" +
			"one of name, dist, release, arch, variant, build, os, release_title and\n" +
			"alias. -d, -r, -a and --variant are exact filters on their fields.\n" +
			"\n" +
			"Formats: table (NAME, ALIASES, ARCH, VARIANT, BUILD, SIZE), text (the\n" +
			"layout of --list), and csv, json and yaml, with the fields name, dist,\n" +
			"release, arch, variant, build, build_date, size, sha256, path, os,\n" +
			"release_title and aliases (empty or null where the index alone does\n" +
			"not say).",
		Flags: append(flags, serverFlags()...),
		Action: func(c *cli.Context) error {
			format, err := compat.ParseListFormat(c.String("format"))
			if err != nil {
				return usageErrorf("--format: %v", err)
			}
			filters := c.Args().Slice()
			if _, err := compat.ParseFilters(filters); err != nil {
				return usageErrorf("%v", err)
			}
			// The template run's --format takes text and json only; the
			// list command's is checked above.
			o, err := optionsFrom(listFlagValues{c}, s)
			if err != nil {
				return err
			}
			o.List, o.ListCommand = true, true
			o.Format, o.Filters, o.AllBuilds = string(format), filters, c.Bool("all-builds")
			return Run(c.Context, o, s)
		},
	}
}

// listFormatFlag is the list command's --format.
func listFormatFlag() cli.Flag {
	names := make([]string, len(compat.ListFormats))
	for i, f := range compat.ListFormats {
		names[i] = string(f)
	}
	return &cli.StringFlag{Name: "format", Value: string(compat.ListTable), Usage: "Output format: `" + strings.Join(names, "|") + "`"}
}

// listFlagValues are the list command's flags as optionsFrom reads them:
// its --format is not the template run's.
type listFlagValues struct{ *cli.Context }

func (v listFlagValues) String(name string) string {
	if name == "format" {
		return "text"
	}
	return v.Context.String(name)
}

// listImages is the list command: the rows of the streams (or of the
// index, when the server has no streams) of the images the mode's index
// lists, filtered, in the format asked for. Nothing but the listing goes
// to stdout.
func (r *run) listImages(ctx context.Context) error {
	r.out = io.Discard
	o := r.o
	filters, err := compat.ParseFilters(o.Filters)
	if err != nil {
		return err
	}
	q := compat.Query{Dist: o.Dist, Release: o.Release, Arch: o.Arch}
	if o.VariantSet {
		q.Variant = o.Variant
	}
	filters = append(filters, compat.QueryFilters(q)...)
	format, err := compat.ParseListFormat(o.Format)
	if err != nil {
		return err
	}
	got, err := r.listing(ctx, true)
	if err != nil {
		return err
	}
	ix := struct{ res *fetch.IndexResult }{got.index}
	streams, streamsErr := got.streams, got.streamsErr
	var rows []compat.ListRow
	switch {
	case streamsErr == nil:
		// What a template run can create: the images of the signed index
		// for this mode (the streams do not tell system images from
		// user ones), in every build the streams name.
		rows = compat.KeepIndexed(streams.Streams.Rows(), ix.res.Index)
	case isNotFound(streamsErr):
		line := fmt.Sprintf("the server publishes no simplestreams (%s); listing from its index, without %s",
			compat.StreamsIndexPath, strings.Join(compat.IndexMissingFields, ", "))
		if keys := filters.NeedStreams(); len(keys) > 0 {
			line += "; filters on " + strings.Join(keys, ", ") + " match nothing"
		}
		r.warnOnce("nostreams", "%s", line)
		rows = compat.IndexRows(ix.res.Index.Entries)
	default:
		return streamsErr
	}
	rows = compat.SelectRows(rows, filters, o.AllBuilds)
	if format == compat.ListText {
		// The --list layout, as LuCI and scripts parse it.
		if _, err := io.WriteString(r.s.Stdout, "\n---\n"); err != nil {
			return err
		}
	}
	return compat.WriteRows(r.s.Stdout, format, rows)
}

// isNotFound reports an answer of 404 or 410: the file is not on the
// server.
func isNotFound(err error) bool {
	var se *fetch.StatusError
	return errors.As(err, &se) && (se.StatusCode == http.StatusNotFound || se.StatusCode == http.StatusGone)
}

// serverFlags are the template run's options for reaching and trusting an
// image server, for the commands that read one.
func serverFlags() []cli.Flag {
	var flags []cli.Flag
	for _, name := range []string{"server", "keyid", "keyserver", "keyring", "no-validate", "ca-cert", "nameserver", "4", "6", "verbose", "index-ttl"} {
		flags = append(flags, templateFlag(name))
	}
	return flags
}

// imageFlags choose images: by distribution, release, architecture and
// variant, each matching any when not given.
func imageFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "dist", Aliases: []string{"d"}, Usage: "Only the distribution `DIST`"},
		&cli.StringFlag{Name: "release", Aliases: []string{"r"}, Usage: "Only the release `RELEASE`"},
		&cli.StringFlag{Name: "arch", Aliases: []string{"a"}, Usage: "Only the architecture `ARCH`"},
		// The template run's default variant, which a run that is not
		// given --variant does not filter by (Options.VariantSet).
		&cli.StringFlag{Name: "variant", Value: "default", DefaultText: "any", Usage: "Only the variant `VARIANT`"},
	}
}
