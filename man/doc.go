// Package man holds lxc-download's man page and shell completions, and gen
// also writes the --help text into cmd/usage_text.go. All of them are
// generated from the command definitions in package cmd, the ones that
// parse the arguments and print --help, by gen (not linked into the
// binary): run `go generate ./man` (or `make man`) after changing an
// option or a command, and commit the result. A test fails while they are
// stale.
package man

//go:generate go run ./gen -o .
