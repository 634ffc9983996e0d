package cmd

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

// The shell template read its arguments with GNU getopt(1), and lxc-create,
// scripts and people use the forms getopt accepts. urfave/cli reads only
// what the standard flag package reads (-x v, --x v, --x=v, up to the first
// argument that is not an option), so every command line is first brought
// into that form here, by getopt's rules:
//
//   - a short option's value may be glued to it (-ddebian) or follow it
//     (-d debian); switches combine (-lq), and the last letter of a cluster
//     may take a value (-qddebian);
//   - a long option may be abbreviated to any prefix that names only one
//     option (--dis debian); a prefix of several is an error;
//   - options and other arguments may come in any order (getopt permutes);
//   - "--" ends the options: everything after it is an argument.
//
// Two forms the standard flag package accepted, and this program therefore
// did, are kept although getopt reads them otherwise: a single dash before a
// whole long option name (-dist debian, -rootfs=DIR) is that long option,
// and -X=VALUE gives VALUE to the short option X (getopt would give it
// "=VALUE"). Nobody means "ist" by -dist or "=amd64" by -a=amd64.
//
// The result is canonical: each option as --NAME=VALUE (or --NAME for a
// switch) under its first name, then "--" and the other arguments, so the
// flag set that parses it needs no aliases, and a repeated option keeps its
// last value.

// optionSpec is what the normaliser needs to know of a command's options.
type optionSpec struct {
	long  map[string]optionDef // every name of two or more letters
	short map[byte]optionDef   // every one-letter name
	names []string             // the long names, sorted, for prefixes
}

// optionDef is one option: the name urfave/cli knows it by, and whether it
// takes a value.
type optionDef struct {
	name  string
	value bool
}

// specOf reads the names of flags, and whether each takes a value, from
// their urfave/cli definitions.
func specOf(flags []cli.Flag) optionSpec {
	sp := optionSpec{long: map[string]optionDef{}, short: map[byte]optionDef{}}
	for _, f := range flags {
		names := f.Names()
		d := optionDef{name: names[0]}
		if df, ok := f.(cli.DocGenerationFlag); ok {
			d.value = df.TakesValue()
		}
		for _, n := range names {
			if len(n) == 1 {
				sp.short[n[0]] = d
				continue
			}
			sp.long[n] = d
			sp.names = append(sp.names, n)
		}
	}
	sort.Strings(sp.names)
	return sp
}

// normalize brings args (without the program name) into the canonical form
// described above. Its errors name the option as it was typed.
func normalize(args []string, sp optionSpec) ([]string, error) {
	var opts, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		// next takes the following argument as the value of option typed.
		next := func(typed string) (string, error) {
			if i+1 >= len(args) {
				return "", usageErrorf("option %s needs a value", typed)
			}
			i++
			return args[i], nil
		}
		switch {
		case a == "--":
			rest = append(rest, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "--"):
			o, err := sp.longOption(a, a[2:], next)
			if err != nil {
				return nil, err
			}
			opts = append(opts, o)
		case len(a) > 1 && a[0] == '-':
			o, err := sp.shortOptions(a, next)
			if err != nil {
				return nil, err
			}
			opts = append(opts, o...)
		default:
			rest = append(rest, a)
		}
	}
	if len(rest) > 0 {
		opts = append(append(opts, "--"), rest...)
	}
	return opts, nil
}

// longOption reads one long option: typed is the argument as given, word
// what follows its dashes (NAME or NAME=VALUE).
func (sp optionSpec) longOption(typed, word string, next func(string) (string, error)) (string, error) {
	name, value, hasValue := strings.Cut(word, "=")
	shown := strings.TrimSuffix(typed, "="+value)
	if !hasValue {
		shown = typed
	}
	d, err := sp.lookupLong(name, shown)
	if err != nil {
		return "", err
	}
	if !d.value {
		if !hasValue {
			return "--" + d.name, nil
		}
		// The flag package took --list=true and --list=false; keep them.
		if _, err := strconv.ParseBool(value); err != nil {
			return "", usageErrorf("option %s takes no value", shown)
		}
		return "--" + d.name + "=" + value, nil
	}
	if !hasValue {
		if value, err = next(shown); err != nil {
			return "", err
		}
	}
	return "--" + d.name + "=" + value, nil
}

// lookupLong finds a long option by its name or an unambiguous prefix of
// it, as getopt_long does.
func (sp optionSpec) lookupLong(name, shown string) (optionDef, error) {
	if d, ok := sp.long[name]; ok {
		return d, nil
	}
	var found []string
	var d optionDef
	if name != "" {
		for _, n := range sp.names {
			if strings.HasPrefix(n, name) && (len(found) == 0 || sp.long[n] != d) {
				found = append(found, "--"+n)
				d = sp.long[n]
			}
		}
	}
	switch len(found) {
	case 0:
		return d, usageErrorf("unknown option %s", shown)
	case 1:
		return d, nil
	}
	return d, usageErrorf("option %s is ambiguous; possibilities: %s", shown, strings.Join(found, " "))
}

// shortOptions reads an argument of one dash: a cluster of short options,
// or one of the two forms the flag package read (see above).
func (sp optionSpec) shortOptions(a string, next func(string) (string, error)) ([]string, error) {
	word := a[1:]
	if name, _, _ := strings.Cut(word, "="); len(name) > 1 {
		if _, ok := sp.long[name]; ok {
			o, err := sp.longOption(a, word, next)
			return []string{o}, err
		}
	}
	if len(word) > 1 && word[1] == '=' {
		if d, ok := sp.short[word[0]]; ok {
			if !d.value {
				if _, err := strconv.ParseBool(word[2:]); err != nil {
					return nil, usageErrorf("option -%c takes no value", word[0])
				}
			}
			return []string{"--" + d.name + "=" + word[2:]}, nil
		}
	}
	var out []string
	for j := 0; j < len(word); j++ {
		d, ok := sp.short[word[j]]
		if !ok {
			if j == 0 {
				name, _, _ := strings.Cut(a, "=")
				return nil, usageErrorf("unknown option %s", name)
			}
			return nil, usageErrorf("unknown option -%c in %s", word[j], a)
		}
		if !d.value {
			out = append(out, "--"+d.name)
			continue
		}
		value := word[j+1:]
		if value == "" {
			var err error
			if value, err = next(fmt.Sprintf("-%c", word[j])); err != nil {
				return nil, err
			}
		}
		return append(out, "--"+d.name+"="+value), nil
	}
	return out, nil
}
