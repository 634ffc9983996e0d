package cmd

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
)

// versionCommand prints what the binary is: `lxc-download version`, the
// same as the template run's --version.
func versionCommand(s IO) *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "Print the version, commit, Go version, built-in key and compat level",
		Description: "The built-in key is the one that verifies images.linuxcontainers.org's\n" +
			"images when no --keyring or --keyid is given; its fingerprint is\n" +
			"checked against the one pinned in the program as it is printed.",
		Flags: []cli.Flag{formatFlag()},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf("version takes no arguments, not %q", c.Args().First())
			}
			format, err := checkFormat(c)
			if err != nil {
				return err
			}
			return writeVersion(s.Stdout, format)
		},
	}
}

// formatFlag is --format of the commands: text, or json for scripts.
func formatFlag() cli.Flag {
	return &cli.StringFlag{Name: "format", Value: "text", Usage: "Output format: `text|json`"}
}

// checkFormat returns the command's --format, which must be text or json.
func checkFormat(c *cli.Context) (string, error) {
	f := c.String("format")
	if f != "text" && f != "json" {
		return "", usageErrorf("--format must be text or json, not %q", f)
	}
	return f, nil
}

// buildInfo is what `version` prints.
type buildInfo struct {
	Version     string `json:"version"`
	Commit      string `json:"commit"`
	Go          string `json:"go"`
	Platform    string `json:"platform"`
	Key         string `json:"builtin_key"`
	CompatLevel int    `json:"compat_level"`
}

// currentBuild describes this binary.
func currentBuild() (buildInfo, error) {
	b := buildInfo{
		Version:     Version,
		Commit:      commit(),
		Go:          runtime.Version(),
		Platform:    runtime.GOOS + "/" + runtime.GOARCH,
		CompatLevel: compat.Level,
	}
	// Loading the key checks the embedded file against the pinned
	// fingerprint, so what is printed is what verifies.
	kr, err := fetch.BuiltinKeyring()
	if err != nil {
		return b, err
	}
	b.Key = strings.ToUpper(fmt.Sprintf("%x", kr[0].PrimaryKey.Fingerprint))
	return b, nil
}

// commit is the source revision: Commit as the Makefile sets it, else what
// the go command recorded (not with -buildvcs=false or outside git).
func commit() string {
	if Commit != "" {
		return Commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" && dirty {
			rev += "-dirty"
		}
		if rev != "" {
			return rev
		}
	}
	return "unknown"
}

// writeVersion prints currentBuild as text or JSON.
func writeVersion(w io.Writer, format string) error {
	b, err := currentBuild()
	if err != nil {
		return err
	}
	if format == "json" {
		out, err := json.Marshal(b)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", out)
		return err
	}
	_, err = fmt.Fprintf(w, "%s %s\ncommit:       %s\ngo:           %s (%s)\nbuilt-in key: %s\ncompat level: %d\n",
		programName, b.Version, b.Commit, b.Go, b.Platform, b.Key, b.CompatLevel)
	return err
}
