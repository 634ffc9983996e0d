package cmd

import (
	"github.com/urfave/cli/v2"
)

// listCommand is `lxc-download list`: the images on the server, as --list
// prints them. It is where the listing's filters and formats grow.
func listCommand(s IO) *cli.Command {
	flags := append(imageFlags(), formatFlag())
	return &cli.Command{
		Name:      "list",
		Usage:     "List the images on the image server",
		ArgsUsage: "[FILTER...]",
		Description: "Prints what --list prints: the server's index, in the shell template's\n" +
			"columns (text) or as JSON, limited to the images that -d, -r, -a and\n" +
			"--variant name. FILTER arguments are not taken yet.",
		Flags: append(flags, serverFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf("list does not take filters yet (%q); use -d, -r, -a and --variant", c.Args().First())
			}
			o, err := optionsFrom(c, s)
			if err != nil {
				return err
			}
			o.List = true
			return Run(c.Context, o, s)
		},
	}
}

// serverFlags are the template run's options for reaching and trusting an
// image server, for the commands that read one.
func serverFlags() []cli.Flag {
	var flags []cli.Flag
	for _, name := range []string{"server", "keyid", "keyserver", "keyring", "no-validate", "ca-cert", "nameserver", "verbose"} {
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
