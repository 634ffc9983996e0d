package compat

import (
	"bytes"
	"os"
)

// The uid maps CurrentNamespace reads: this process's and init's.
const (
	selfUIDMap = "/proc/self/uid_map"
	initUIDMap = "/proc/1/uid_map"
)

// CurrentNamespace says what kind of user namespace this process runs in,
// from /proc/self/uid_map and /proc/1/uid_map, by the rules of
// ParseNamespace.
func CurrentNamespace() Namespace {
	return namespaceFrom(selfUIDMap, initUIDMap)
}

// namespaceFrom is CurrentNamespace with the two map files named, so tests
// can give it real files of their own.
func namespaceFrom(selfPath, initPath string) Namespace {
	self, selfExists := readMap(selfPath)
	init, initExists := readMap(initPath)
	return ParseNamespace(self, selfExists, init, initExists)
}

// readMap reads a uid map. Like the shell template, which tests for the
// file with [ -e ] (a stat that fails for any reason means absent) and then
// reads it, a map that exists but cannot be read counts as present and empty.
func readMap(path string) (data []byte, exists bool) {
	if _, err := os.Stat(path); err != nil {
		return nil, false
	}
	data, _ = os.ReadFile(path)
	return data, true
}

// String names the namespace as the shell template's in_userns did: "no",
// "userns-root" or "yes".
func (n Namespace) String() string {
	switch n {
	case NoUserns:
		return "no"
	case UsernsRoot:
		return "userns-root"
	case InUserns:
		return "yes"
	}
	return "unknown"
}

// ParseNamespace decides the namespace from the contents of this process's
// uid map (selfMap; selfExists false when the file is missing) and init's
// (initMap, initExists), with the rules of the shell template's in_userns:
//
//   - no map file: NoUserns (a kernel without user namespaces);
//   - otherwise each line in turn, split into whitespace-separated fields
//     (the kernel pads them with spaces): fields 1-3 "0 0 4294967295", the
//     identity map of the initial namespace, gives NoUserns; fields 2-3
//     "0 1", root mapped to itself alone, gives UsernsRoot; the first line
//     that matches either decides;
//   - a map equal to init's (ignoring trailing newlines, as $(cat) does)
//     gives UsernsRoot: this process shares init's namespace;
//   - anything else is InUserns.
//
// As with read(1), an unterminated last line is not looked at on its own
// (the kernel always ends its lines), though it still counts in the
// comparison with init's map.
func ParseNamespace(selfMap []byte, selfExists bool, initMap []byte, initExists bool) Namespace {
	if !selfExists {
		return NoUserns
	}
	rest := selfMap
	for {
		line, after, found := bytes.Cut(rest, []byte("\n"))
		if !found {
			break
		}
		rest = after
		f := mapFields(line)
		if f[0] == "0" && f[1] == "0" && f[2] == "4294967295" {
			return NoUserns
		}
		if f[1] == "0" && f[2] == "1" {
			return UsernsRoot
		}
	}
	if initExists && bytes.Equal(bytes.TrimRight(selfMap, "\n"), bytes.TrimRight(initMap, "\n")) {
		return UsernsRoot
	}
	return InUserns
}

// mapFields returns the first three fields of a uid map line, split at runs
// of spaces and tabs as awk does; missing fields are empty.
func mapFields(line []byte) [3]string {
	var f [3]string
	i := 0
	for n := 0; n < len(f); n++ {
		for i < len(line) && isBlank(line[i]) {
			i++
		}
		start := i
		for i < len(line) && !isBlank(line[i]) {
			i++
		}
		f[n] = string(line[start:i])
	}
	return f
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }
