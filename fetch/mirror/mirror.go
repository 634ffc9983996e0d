// Package mirror copies images from an image server into a directory that
// any static web server can serve as an image server of its own: the
// same paths (meta/1.0/index-*, streams/v1/*.json, images/.../BUILD/),
// plain files only, every file verified before it is visible there.
//
// A run reads the source's signed indexes and its simplestreams, picks
// the builds of the images the filters match (the build each index names,
// and the newest Options.Keep builds the streams list), downloads those it
// does not have yet into a private work directory inside the destination
// (WorkDir), where partial files are resumed by the next run, and verifies
// them with the keyring (SHA256SUMS and its signature, the files' own
// signatures, the streams' sha256). A verified build directory is renamed
// into place whole. Only when every build they name for the mirrored images
// is in place are the streams, then the indexes with their signatures,
// replaced, each by a rename, the signature right after its file. Builds
// that no published file names any more are removed by Options.Prune once
// they have been unnamed for Options.PruneGrace, so that a client holding
// an older index still finds them.
//
// By default the source's signed files are published as the source signed
// them: an index still lists images that were not mirrored, whose files
// then answer 404. With Options.SignKey the indexes and streams are
// rewritten to the mirrored builds and signed with that key; the build
// directories keep the source's signatures, so clients trust both keys.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
)

// Defaults for the zero values of Options.
const (
	// DefaultKeep is how many builds of each image are mirrored: the
	// newest, which is what the index names.
	DefaultKeep = 1
	// DefaultPruneGrace is how long a build stays after the last
	// published file that named it was replaced: clients keep an index
	// for up to an hour.
	DefaultPruneGrace = 2 * time.Hour
	// DefaultJobs is how many builds are downloaded at once.
	DefaultJobs = 3
)

// WorkDir is the mirror's private directory inside the destination: its
// state, its lock, and the partial downloads that the next run resumes.
// It is made with mode 0700, so a web server running as another user
// cannot read it; the README's web server snippets also refuse every path
// that starts with a dot.
const WorkDir = ".lxc-download-mirror"

// Options says what to mirror, from where, and where to.
type Options struct {
	// Source is how the source server is reached and what its files must
	// be signed with: Server, Keyring, CA roots, limits, the index's
	// maximum age. Validate is always on: a mirror publishes nothing
	// unverified. Progress, when set, gets the downloads' progress (bars
	// only when ProgressTerminal is set and Jobs is 1).
	Source fetch.Options
	// Dest is the directory to publish into; it is made if missing.
	Dest string
	// Filters choose the images, as `list` takes them (all when empty).
	Filters compat.Filters
	// Keep is how many of the newest builds of each image the source's
	// streams list are mirrored, besides the build each index names
	// (DefaultKeep when zero or less).
	Keep int
	// Prune removes the builds that no published file names, once they
	// have been unnamed for PruneGrace.
	Prune bool
	// PruneGrace is that time (DefaultPruneGrace when zero; negative: no
	// grace at all).
	PruneGrace time.Duration
	// DryRun fetches the source's indexes and streams and reports what a
	// run would fetch, publish and prune, changing nothing in Dest.
	DryRun bool
	// Jobs is how many builds download at once (DefaultJobs when zero or
	// less).
	Jobs int
	// Incus also mirrors the files Incus and LXD take for a container
	// (incus.tar.xz, lxd.tar.xz, the squashfs and its deltas) as the
	// source's streams list them, verified by the signed SHA256SUMS or the
	// signed streams. Virtual machine disks are not mirrored.
	Incus bool
	// SignKey, when set, makes the run publish indexes and streams of
	// its own, listing only the mirrored builds, signed with this key
	// (see fetch.ReadSigningKey).
	SignKey *openpgp.Entity
	// Log receives plain lines about what the run does; nil discards them.
	Log io.Writer
	// Errors receives a line for each build that failed; nil sends them to
	// Log.
	Errors io.Writer
	// Now is the clock of the grace period (time.Now when nil).
	Now func() time.Time
}

// Report is what a run did, or with DryRun would do.
type Report struct {
	// Source is the source server, Dest the destination directory.
	Source string `json:"source"`
	Dest   string `json:"dest"`
	DryRun bool   `json:"dry_run"`
	// SignedBy is "source" when the source's signed files are published
	// as they are, else the fingerprint of Options.SignKey.
	SignedBy string `json:"signed_by"`
	// Builds are the builds chosen, in the order of their images.
	Builds []BuildReport `json:"builds"`
	// Published are the files replaced in Dest, in the order they were
	// (or would be) renamed into place.
	Published []string `json:"published"`
	// HeldBack says why the source's indexes and streams were not
	// published, when they were not.
	HeldBack string `json:"held_back,omitempty"`
	// Pruned are the build directories removed (or that would be).
	Pruned []string `json:"pruned"`
	// InGrace are the build directories that no published file names,
	// kept until their grace period is over.
	InGrace []GraceReport `json:"in_grace"`
	// Fetched, UpToDate and Failed count Builds by status; Bytes is what
	// was downloaded (with DryRun: what would be, where the streams say).
	Fetched  int   `json:"fetched"`
	UpToDate int   `json:"up_to_date"`
	Failed   int   `json:"failed"`
	Bytes    int64 `json:"bytes"`
	// Errors are the failures, one line each.
	Errors []string `json:"errors"`
	// OK is true when everything succeeded: the exit status is 0.
	OK bool `json:"ok"`
}

// The Status of a BuildReport.
const (
	StatusFetched  = "fetched"
	StatusUpToDate = "up-to-date"
	StatusFailed   = "failed"
	// StatusToFetch is a dry run's build that a run would download.
	StatusToFetch = "to-fetch"
)

// BuildReport is one build chosen for the mirror.
type BuildReport struct {
	// Image is "DIST/RELEASE/ARCH/VARIANT", Build its id, Path its
	// directory below Dest.
	Image string `json:"image"`
	Build string `json:"build"`
	Path  string `json:"path"`
	// Status is one of StatusFetched, StatusUpToDate, StatusFailed,
	// StatusToFetch.
	Status string `json:"status"`
	// Bytes is what was downloaded for it.
	Bytes int64 `json:"bytes,omitempty"`
	// Error says why it failed.
	Error string `json:"error,omitempty"`
}

// GraceReport is a build directory waiting out its grace period.
type GraceReport struct {
	Path string `json:"path"`
	// UnnamedSince is when a run first found no published file naming it.
	UnnamedSince time.Time `json:"unnamed_since"`
	// PruneAfter is when --prune may remove it.
	PruneAfter time.Time `json:"prune_after"`
}

// ErrFailed is matched (errors.Is) by the error Run returns when some
// builds failed or the indexes could not be published; the Report says
// which.
var ErrFailed = errors.New("mirror incomplete")

// Run mirrors what o asks for and reports what it did. The error is nil
// only when everything succeeded; a run whose builds failed in part still
// publishes and prunes what it safely can, and returns an error matching
// ErrFailed with the Report.
func Run(ctx context.Context, o Options) (*Report, error) {
	m, err := newRun(o)
	if err != nil {
		return nil, err
	}
	err = m.run(ctx)
	m.rep.OK = err == nil
	if err != nil && !errors.Is(err, ErrFailed) {
		m.rep.Errors = append(m.rep.Errors, compat.PrintableLine(err.Error()))
	}
	return m.rep, err
}

// run is the state of one Run.
type run struct {
	o      Options
	dest   string // absolute
	work   string // dest/WorkDir
	client *fetch.Client
	log    *lineLog
	errs   *lineLog
	rep    *Report
	now    time.Time
	st     *state
	unlock func()
	// signedStreams is set when the source's streams verified with the
	// keyring: their sha256 then vouch for the files they list.
	signedStreams bool
}

func newRun(o Options) (*run, error) {
	if o.Dest == "" {
		return nil, errors.New("mirror: no destination directory")
	}
	dest, err := filepath.Abs(o.Dest)
	if err != nil {
		return nil, fmt.Errorf("mirror: %s: %w", o.Dest, err)
	}
	if o.Keep <= 0 {
		o.Keep = DefaultKeep
	}
	switch {
	case o.PruneGrace == 0:
		o.PruneGrace = DefaultPruneGrace
	case o.PruneGrace < 0:
		o.PruneGrace = 0
	}
	if o.Jobs <= 0 {
		o.Jobs = DefaultJobs
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Source.Validate = true
	if len(o.Source.Keyring) == 0 {
		return nil, errors.New("mirror: no keys to verify the source with")
	}
	m := &run{o: o, dest: dest, work: filepath.Join(dest, WorkDir), now: o.Now()}
	m.log = newLineLog(o.Log)
	m.errs = m.log
	if o.Errors != nil {
		m.errs = newLineLog(o.Errors)
	}
	src := o.Source
	// The metadata client says nothing about progress: the files are
	// small, and the build downloads have clients of their own.
	src.Progress = nil
	src.Warn = onceWriter(o.Source.Warn)
	m.o.Source.Warn = src.Warn
	if m.client, err = fetch.New(src); err != nil {
		return nil, err
	}
	server, _ := fetch.ParseServer(o.Source.Server)
	m.rep = &Report{Source: server.String(), Dest: dest, DryRun: o.DryRun, SignedBy: "source",
		Builds: []BuildReport{}, Published: []string{}, Pruned: []string{}, InGrace: []GraceReport{}, Errors: []string{}}
	if o.SignKey != nil {
		m.rep.SignedBy = fmt.Sprintf("%X", o.SignKey.PrimaryKey.Fingerprint)
	}
	return m, nil
}

func (m *run) run(ctx context.Context) error {
	if m.o.DryRun {
		st, err := readState(m.work)
		if err != nil {
			return err
		}
		m.st = st
	} else {
		if err := m.openWork(); err != nil {
			return err
		}
		defer m.unlock()
	}
	m.log.printf("Reading the indexes and streams of %s", m.rep.Source)
	src, err := m.fetchSource(ctx)
	if err != nil {
		return err
	}
	if err := m.checkRollback(src); err != nil {
		return err
	}
	m.signedStreams = src.streams != nil && src.streams.Signed
	builds := selectBuilds(src, m.o.Filters, m.o.Keep)
	if m.o.Incus {
		if err := m.attachExtras(src, builds); err != nil {
			return err
		}
	}
	if len(builds) == 0 {
		m.log.printf("No image of the source matches the filters")
	}
	m.classify(builds)
	if m.o.DryRun {
		return m.dryRun(src, builds)
	}
	m.fetchAll(ctx, builds)
	if ctx.Err() != nil {
		// Interrupted: what was downloaded is kept for the next run,
		// nothing is published from a half-done run.
		m.report(builds)
		return context.Cause(ctx)
	}
	published, heldBack, err := m.publish(src, builds)
	m.report(builds)
	m.rep.Published = append(m.rep.Published, published...)
	m.rep.HeldBack = heldBack
	if err != nil {
		return err
	}
	if err := m.references(builds); err != nil {
		return err
	}
	m.cleanStage(builds)
	if err := m.st.save(); err != nil {
		return err
	}
	if m.rep.Failed > 0 || heldBack != "" {
		what := fmt.Sprintf("%d of %d builds failed", m.rep.Failed, len(builds))
		if heldBack != "" {
			what += "; " + heldBack
		}
		return fmt.Errorf("%w: %s", ErrFailed, what)
	}
	return nil
}

// report fills the Report's builds from the run's.
func (m *run) report(builds []*build) {
	for _, b := range builds {
		br := BuildReport{Image: imageName(b.image), Build: b.entry.Build, Path: b.rel, Status: b.status, Bytes: b.bytes}
		switch b.status {
		case StatusFetched:
			m.rep.Fetched++
		case StatusUpToDate:
			m.rep.UpToDate++
		case StatusFailed:
			m.rep.Failed++
			br.Error = compat.PrintableLine(b.err.Error())
			m.rep.Errors = append(m.rep.Errors, fmt.Sprintf("%s %s: %s", br.Image, br.Build, br.Error))
		}
		m.rep.Bytes += b.bytes
		m.rep.Builds = append(m.rep.Builds, br)
	}
}

func imageName(q compat.Query) string {
	return q.Dist + "/" + q.Release + "/" + q.Arch + "/" + q.Variant
}

// Summary is the report's last line for a person or a log: what was
// fetched, published and pruned, and what failed.
func (r *Report) Summary() string {
	var b strings.Builder
	verb := func(done, would string) string {
		if r.DryRun {
			return would
		}
		return done
	}
	images := map[string]bool{}
	for _, br := range r.Builds {
		images[br.Image] = true
	}
	fmt.Fprintf(&b, "%s, %s: ", count(len(images), "image"), count(len(r.Builds), "build"))
	if r.DryRun {
		size := humanBytes(r.Bytes)
		if r.Bytes == 0 && r.countStatus(StatusToFetch) > 0 {
			size = "size unknown without streams"
		}
		fmt.Fprintf(&b, "%d to fetch (%s)", r.countStatus(StatusToFetch), size)
	} else {
		fmt.Fprintf(&b, "%d fetched (%s)", r.Fetched, humanBytes(r.Bytes))
	}
	fmt.Fprintf(&b, ", %d up to date, %d failed; ", r.UpToDate, r.Failed)
	fmt.Fprintf(&b, "%s %s", count(len(r.Published), "file"), verb("published", "to publish"))
	if r.HeldBack != "" {
		b.WriteString(" (indexes held back)")
	}
	fmt.Fprintf(&b, "; %s %s, %d in the grace period", count(len(r.Pruned), "build"), verb("pruned", "to prune"), len(r.InGrace))
	return b.String()
}

func (r *Report) countStatus(s string) int {
	n := 0
	for _, b := range r.Builds {
		if b.Status == s {
			n++
		}
	}
	return n
}

// count is "1 build", "2 builds".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// humanBytes is n in binary units, e.g. "12.3 MiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
