// Package compat holds the image server's formats and compatibility rules:
// the index, the compat level, system and user mode, the meta files, the
// container config rewrite and architecture names. It does no I/O on the
// network; fetch and cache use its types.
package compat

// Level is the client compatibility level this program speaks. It selects
// index-MODE.Level and the meta files' NAME.Level variants, and goes into the
// User-Agent.
const Level = 7

// Mode selects which images a run uses: the server publishes index-system
// for containers made by real root and index-user for unprivileged ones, and
// meta files may have -user variants.
type Mode string

// The two modes. Their values are the words used in file names.
const (
	System Mode = "system"
	User   Mode = "user"
)

// Namespace says what kind of user namespace this process runs in.
type Namespace int

// The namespaces of SPEC section 3.
const (
	// NoUserns: not in a user namespace (or the initial one).
	NoUserns Namespace = iota
	// UsernsRoot: in a user namespace where root is mapped to itself:
	// user mode, but the system cache.
	UsernsRoot
	// InUserns: an unprivileged user namespace: user mode and the user's
	// own cache; a --mapped-uid is required.
	InUserns
)

// Mode is the image mode for the namespace.
func (n Namespace) Mode() Mode {
	if n == NoUserns {
		return System
	}
	return User
}

// CacheTarget says which cache root the namespace uses: System means
// LOCALSTATEDIR/cache/lxc, User means $HOME/.cache/lxc.
func (n Namespace) CacheTarget() Mode {
	if n == InUserns {
		return User
	}
	return System
}

// Entry is one line of the index: an image build and the directory on the
// server that holds its files.
type Entry struct {
	Dist    string `json:"dist"`
	Release string `json:"release"`
	Arch    string `json:"arch"`
	Variant string `json:"variant"`
	Build   string `json:"build"`
	// Path is the image directory below the server root, as the index
	// gives it (e.g. "/images/debian/bookworm/amd64/default/20261120_05:24/").
	Path string `json:"path"`
}

// Index is a parsed index file, its entries in file order.
type Index struct {
	Entries []Entry
}

// Query selects images. An empty field matches anything.
type Query struct {
	Dist, Release, Arch, Variant string
}
