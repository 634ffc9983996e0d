package cmd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"golang.org/x/sys/unix"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
)

// run is the state of one invocation: the options, where to write, and what
// has been set up lazily (the network client is only built when a run needs
// the network, so a warm-cache run says nothing about keys).
type run struct {
	o      Options
	s      IO
	out    io.Writer // progress messages; io.Discard with --quiet
	mode   compat.Mode
	ns     compat.Namespace
	client *fetch.Client
	keys   openpgp.EntityList // the trusted keys, once known
	stdin  *bufio.Reader
	warned map[string]bool
	// clockFloor is the newest index signature time this host has seen
	// for the image: a clock behind it (no battery-backed clock) is
	// wrong, and certificates and keys are judged by it instead.
	clockFloor time.Time

	// index is the index this run downloaded, and streams with
	// streamsErr the simplestreams, once asked for.
	index      *fetch.IndexResult
	streams    *fetch.StreamsResult
	streamsErr error

	// unpackWarn takes the unpacker's warnings: a streamed unpack that was
	// given up is followed by one from the cache, which meets the same
	// entries and would say the same things again.
	unpackWarn *onceLines
	// fetchWarn takes the network clients' warnings: a pinned build's
	// download has a client of its own (cappedClient), which would say
	// the same things again.
	fetchWarn *onceLines
}

// Run does what the options ask: list the images, or make sure the image is
// in the cache and unpack and configure it into the container.
func Run(ctx context.Context, o Options, s IO) error {
	r := &run{o: o, s: s, out: s.Stdout, warned: map[string]bool{}, unpackWarn: &onceLines{w: s.Stderr}, fetchWarn: &onceLines{w: s.Stderr}}
	if o.Quiet || (o.List && o.Format == "json") {
		r.out = io.Discard
	}
	if err := r.checkArgs(); err != nil {
		return err
	}
	r.ns = compat.CurrentNamespace()
	r.mode = r.ns.Mode()
	if r.ns == compat.InUserns && o.MappedUID < 0 && !o.List && !o.standalone() {
		return errors.New("In a user namespace without a map")
	}
	if o.ListCommand {
		// Only the listing goes to stdout.
		r.out = io.Discard
	}
	r.serverArch()
	if o.ListCommand {
		return r.listImages(ctx)
	}
	if o.List {
		_, err := r.list(ctx)
		return err
	}
	if err := r.chooseImage(ctx); err != nil {
		return err
	}
	return r.create(ctx)
}

func (r *run) say(format string, args ...any) {
	fmt.Fprintf(r.out, format+"\n", args...)
}

// warnOnce writes a warning to stderr the first time it is raised.
func (r *run) warnOnce(key, format string, args ...any) {
	if r.warned[key] {
		return
	}
	r.warned[key] = true
	fmt.Fprintf(r.s.Stderr, "WARNING: "+format+"\n", args...)
}

// checkArgs checks the arguments lxc-create passes (that they are all
// there is checked while parsing).
func (r *run) checkArgs() error {
	o := r.o
	if o.List || o.standalone() {
		return nil
	}
	// The name and paths become lines of the container's config (lxc.uts.name,
	// lxc.mount.fstab, the templates' LXC_* words): a newline would inject
	// lines of its own, other control characters would hide what is there.
	for _, a := range []struct{ flag, v string }{{"--name", o.Name}, {"--path", o.Path}, {"--rootfs", o.Rootfs}} {
		if compat.HasControl(a.v) {
			return fmt.Errorf("%s %q has a control character or is not UTF-8", a.flag, a.v)
		}
	}
	return nil
}

// chooseImage fills in the distribution, release and architecture: the
// host's architecture when only it is missing, else the interactive prompts
// of the shell template when a person is at a terminal.
func (r *run) chooseImage(ctx context.Context) error {
	o := &r.o
	if o.Dist != "" && o.Release != "" && o.Arch == "" {
		arch, err := compat.HostArch()
		if err != nil {
			return fmt.Errorf("no --arch given and this host's architecture is unknown: %w", err)
		}
		o.Arch = arch
		r.say("Using this host's architecture: %s", arch)
	}
	var missing []string
	for _, m := range []struct{ v, flag string }{{o.Dist, "--dist"}, {o.Release, "--release"}, {o.Arch, "--arch"}} {
		if m.v == "" {
			missing = append(missing, m.flag)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if !r.s.Interactive {
		return fmt.Errorf("missing %s (standard input is not a terminal, so they cannot be asked for; see --list)", strings.Join(missing, ", "))
	}
	if _, err := r.list(ctx); err != nil {
		return err
	}
	r.stdin = bufio.NewReader(r.s.Stdin)
	fmt.Fprintln(r.s.Stdout)
	for _, q := range []struct {
		prompt string
		v      *string
	}{{"Distribution", &o.Dist}, {"Release", &o.Release}, {"Architecture", &o.Arch}} {
		if *q.v != "" {
			continue
		}
		fmt.Fprintf(r.s.Stdout, "%s: \n", q.prompt)
		line, err := r.stdin.ReadString('\n')
		*q.v = strings.TrimSpace(line)
		if *q.v == "" {
			if err == nil {
				err = errors.New("empty answer")
			}
			return fmt.Errorf("no %s given: %w", strings.ToLower(q.prompt), err)
		}
	}
	fmt.Fprintln(r.s.Stdout)
	r.serverArch()
	return nil
}

// serverArch takes the architecture as uname or a distribution names it
// (x86_64, aarch64, armv7l, i686, ...) to the image server's name for it,
// the table host detection uses, and says so.
func (r *run) serverArch() {
	if a, ok := compat.ServerArch(r.o.Arch); ok && a != r.o.Arch {
		r.say("Using architecture %s for %s", a, r.o.Arch)
		r.o.Arch = a
	}
}

// list prints the index, filtered by what the options name.
func (r *run) list(ctx context.Context) (*compat.Index, error) {
	got, err := r.listing(ctx, false)
	if err != nil {
		return nil, err
	}
	ix := got.index.Index
	q := compat.Query{Dist: r.o.Dist, Release: r.o.Release, Arch: r.o.Arch}
	if r.o.VariantSet {
		q.Variant = r.o.Variant
	}
	entries := ix.Filter(q)
	if r.o.List && r.o.Format == "json" {
		return ix, compat.WriteListJSON(r.s.Stdout, entries)
	}
	// The listing itself is the output of --list, so --quiet keeps it.
	fmt.Fprint(r.s.Stdout, "\n---\n")
	return ix, compat.WriteList(r.s.Stdout, entries)
}

// fetchOptions are the network settings of this run, without the keys.
func (r *run) fetchOptions() (fetch.Options, error) {
	fo := fetch.Options{
		Server:        r.o.Server,
		Version:       Version,
		Validate:      r.o.Validate,
		Warn:          r.fetchWarn,
		CACert:        r.o.CACert,
		Nameservers:   r.o.Nameservers,
		IPVersion:     r.o.IPVersion,
		MaxMetaSize:   r.o.MaxMetaSize,
		MaxRootfsSize: r.o.MaxRootfsSize,
		DiskReserve:   r.o.DiskReserve,
		MaxIndexAge:   r.o.MaxIndexAge,
		Now: func() time.Time {
			return latest(time.Now(), r.clockFloor)
		},
	}
	if r.o.Verbose {
		fo.Verbose = r.s.Stdout
		if r.o.ListCommand {
			// Its stdout is the listing alone.
			fo.Verbose = r.s.Stderr
		}
	}
	if r.out != io.Discard {
		fo.Progress = r.s.Stdout
		fo.ProgressTerminal = r.s.StdoutTerminal
	}
	if v := r.s.getenv("LXC_DOWNLOAD_IDLE_TIMEOUT"); v != "" {
		// For very slow or very bad links (and the tests): how long an
		// attempt may receive nothing before it is retried.
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fo, fmt.Errorf("LXC_DOWNLOAD_IDLE_TIMEOUT: want a duration such as 30s, not %q", v)
		}
		fo.IdleTimeout = d
	}
	return fo, nil
}

// latest is the later of two times.
func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// fetchClient builds the network client on first use, setting up the
// keyring the way the shell template did before its first download.
func (r *run) fetchClient(ctx context.Context) (*fetch.Client, error) {
	if r.client != nil {
		return r.client, nil
	}
	fo, err := r.fetchOptions()
	if err != nil {
		return nil, err
	}
	if r.o.Validate {
		if r.keys == nil {
			// Once, as the shell template did, though a run that
			// moves to another server makes a client for it.
			r.say("Setting up the GPG keyring")
		}
		if fo.Keyring, err = r.keyring(ctx); err != nil {
			return nil, err
		}
	} else {
		r.warnOnce("novalidate", "Running without gpg validation!")
	}
	c, err := fetch.New(fo)
	if err != nil {
		return nil, err
	}
	r.client = c
	return c, nil
}

// keyring returns the keys an image must be signed with: the built-in key
// of images.linuxcontainers.org or the keys of --keyring, narrowed to
// --keyid; a --keyid that no local keyring holds, or any --keyid with an
// explicit --keyserver, is fetched from the keyserver. A cached image is
// verified again with the same keys before every use.
func (r *run) keyring(ctx context.Context) (openpgp.EntityList, error) {
	if r.keys != nil {
		return r.keys, nil
	}
	var local openpgp.EntityList
	var err error
	if r.o.Keyring != "" {
		local, err = fetch.ReadKeyring(r.o.Keyring)
	} else {
		local, err = fetch.BuiltinKeyring()
	}
	if err != nil {
		return nil, err
	}
	if r.o.KeyID == "" {
		r.keys = local
		return local, nil
	}
	sel, selErr := fetch.SelectKey(local, r.o.KeyID)
	keyserver := r.o.Keyserver
	if keyserver == "" {
		if selErr == nil {
			r.keys = sel
			return sel, nil
		}
		if !errors.Is(selErr, fetch.ErrNoKey) {
			return nil, selErr
		}
		keyserver = DefaultKeyserver
	}
	// The keyserver is reached like the image server: same proxies, CA
	// roots and timeouts.
	fo, err := r.fetchOptions()
	if err != nil {
		return nil, err
	}
	hc, err := fetch.NewHTTPClient(fo)
	if err != nil {
		return nil, err
	}
	got, err := fetch.FetchKey(ctx, keyserver, r.o.KeyID, hc)
	switch {
	case err == nil:
		r.keys = got
	case selErr == nil:
		r.warnOnce("keyserver", "Unable to fetch GPG key from keyserver (%v); using the local copy of %s", err, r.o.KeyID)
		r.keys = sel
	default:
		return nil, fmt.Errorf("Unable to fetch GPG key from keyserver: %w", err)
	}
	return r.keys, nil
}

// fingerprints are the hex fingerprints of the keys, as a cache record
// keeps them.
func fingerprints(kr openpgp.EntityList) []string {
	var out []string
	for _, e := range kr {
		out = append(out, fmt.Sprintf("%x", e.PrimaryKey.Fingerprint))
	}
	return out
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// errorText is the text of the ERROR line for err: one line, without the
// control characters that a server's answer quoted in it may hold.
func errorText(err error) string {
	if errors.Is(err, context.Canceled) {
		return "interrupted"
	}
	return compat.PrintableLine(err.Error())
}
