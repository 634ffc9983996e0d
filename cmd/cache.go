package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/urfave/cli/v2"

	"github.com/lxc/lxc-download/cache"
	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
)

// cacheCommand is `lxc-download cache`: look at and look after the local
// image cache that template runs fill.
func cacheCommand(s IO) *cli.Command {
	dryRun := &cli.BoolFlag{Name: "dry-run", Usage: "Say what would be removed, and remove nothing", DisableDefaultText: true}
	return &cli.Command{
		Name:  "cache",
		Usage: "Show, verify and tidy the local image cache",
		Description: "The cache is $LXC_CACHE_PATH, else " + filepath.Join(LocalStateDir, "cache", "lxc") + " (~/.cache/lxc in an\n" +
			"unprivileged user namespace): the one template runs use, in the layout\n" +
			"LXC's shell template uses. An image another run is using is left alone.",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "Show each cached image: build, size, fetch date, expiry, and whether it verifies",
				Flags: append(cacheImageFlags(), formatFlag()),
				Action: func(c *cli.Context) error {
					return cacheAction(c, s, func(st cacheOp) error { return st.list() })
				},
			},
			{
				Name:  "verify",
				Usage: "Check each cached image again: its signed sums or signatures, and every byte of its tarballs",
				Flags: append(cacheImageFlags(), templateFlag("keyring"), formatFlag()),
				Action: func(c *cli.Context) error {
					return cacheAction(c, s, func(st cacheOp) error { return st.verify(c.String("keyring")) })
				},
			},
			{
				Name:  "prune",
				Usage: "Remove expired and damaged images, images older than --older-than, and leftover downloads",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "older-than", Usage: "Also remove images fetched more than `AGE` ago (such as 7d, 36h)"},
					&cli.BoolFlag{Name: "unpacked", Usage: "Also remove the unpacked copies of the images that stay (see --cache-unpacked)", DisableDefaultText: true},
					dryRun, formatFlag(),
				},
				Action: func(c *cli.Context) error {
					age, err := parseAge(c.String("older-than"))
					if err != nil {
						return err
					}
					return cacheAction(c, s, func(st cacheOp) error { return st.prune(age, c.Bool("unpacked")) })
				},
			},
			{
				Name:  "flush",
				Usage: "Remove the cached images that -d, -r, -a and --variant choose",
				Flags: append(cacheImageFlags(),
					&cli.BoolFlag{Name: "all", Usage: "Remove every cached image", DisableDefaultText: true},
					dryRun, formatFlag()),
				Action: func(c *cli.Context) error {
					all := c.Bool("all")
					chosen := c.String("dist") != "" || c.String("release") != "" || c.String("arch") != "" || c.String("variant") != ""
					if all == chosen {
						return usageErrorf("cache flush needs -d, -r, -a or --variant to choose images, or --all (not both)")
					}
					return cacheAction(c, s, func(st cacheOp) error { return st.flush() })
				},
			},
			exportCommand(s),
			importCommand(s),
		},
	}
}

// cacheImageFlags choose cache entries; each matches any when not given.
func cacheImageFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "dist", Aliases: []string{"d"}, Usage: "Only the distribution `DIST`"},
		&cli.StringFlag{Name: "release", Aliases: []string{"r"}, Usage: "Only the release `RELEASE`"},
		&cli.StringFlag{Name: "arch", Aliases: []string{"a"}, Usage: "Only the architecture `ARCH`"},
		&cli.StringFlag{Name: "variant", Usage: "Only the variant `VARIANT`"},
	}
}

// cacheOp is one cache command at work: the store, which of its images it
// is about, and where it reports.
type cacheOp struct {
	ctx    context.Context
	store  cache.Cache
	mode   compat.Mode
	filter cache.Key // empty fields match any
	format string
	dryRun bool
	out    io.Writer
	now    time.Time
}

// cacheAction checks that a cache command has no arguments and runs fn on
// the store.
func cacheAction(c *cli.Context, s IO, fn func(cacheOp) error) error {
	if c.NArg() > 0 {
		return usageErrorf("%s takes no arguments, not %q", c.Command.Name, c.Args().First())
	}
	return cacheActionArgs(c, s, fn)
}

// cacheActionArgs runs fn on the store for a cache command whose
// arguments its action has checked.
func cacheActionArgs(c *cli.Context, s IO, fn func(cacheOp) error) error {
	format, err := checkFormat(c)
	if err != nil {
		return err
	}
	root, err := cacheRootFor(s.getenv("LXC_CACHE_PATH"), s.getenv("HOME"), compat.CurrentNamespace())
	if err != nil {
		return err
	}
	ns := compat.CurrentNamespace()
	return fn(cacheOp{
		ctx:    c.Context,
		store:  cache.Cache{Root: root},
		mode:   ns.Mode(),
		filter: cache.Key{Dist: c.String("dist"), Release: c.String("release"), Arch: c.String("arch"), Variant: c.String("variant")},
		format: format,
		dryRun: c.Bool("dry-run"),
		out:    s.Stdout,
		now:    time.Now(),
	})
}

// cacheRootFor is the cache a template run uses: $LXC_CACHE_PATH, else the
// system's or, in an unprivileged user namespace, the user's.
func cacheRootFor(cachePath, home string, ns compat.Namespace) (string, error) {
	if cachePath != "" {
		return cachePath, nil
	}
	if ns.CacheTarget() == compat.System {
		return filepath.Join(LocalStateDir, "cache", "lxc"), nil
	}
	if home == "" {
		return "", errors.New("HOME is not set: cannot place the user cache (set LXC_CACHE_PATH)")
	}
	return filepath.Join(home, ".cache", "lxc"), nil
}

// cachedImage is one image of the cache as the cache commands report it.
type cachedImage struct {
	Dist    string     `json:"dist"`
	Release string     `json:"release"`
	Arch    string     `json:"arch"`
	Variant string     `json:"variant"`
	Build   string     `json:"build,omitempty"`
	Size    int64      `json:"size,omitempty"`
	Fetched *time.Time `json:"fetched,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`
	Expired bool       `json:"expired"`
	// Status: "verified" (stored after verification, with the evidence
	// it was verified with; verify checks that evidence and every byte
	// again), "unverified" (stored by a run with --no-validate),
	// "damaged" (not usable: no record, as for the shell template's
	// entries, a record or file that does not match, or, for verify,
	// evidence or bytes that do not verify), "incomplete" (only a
	// leftover download), or "in use" (another run holds it).
	Status  string `json:"status"`
	Problem string `json:"problem,omitempty"`
	// Action is what prune or flush did: "removed", "would remove",
	// "removed leftover download", "removed unpacked copy", "kept".
	Action string `json:"action,omitempty"`
	// Unpacked is the disk use of the image's unpacked copy
	// (--cache-unpacked), when it has one or the leftover of one.
	Unpacked *unpackedUse `json:"unpacked,omitempty"`

	key      cache.Key
	leftover bool // a download stage or an interrupted update is beside it
}

// unpackedUse is what cache list says of an unpacked copy.
type unpackedUse struct {
	Files int `json:"files"`
	// Size is the bytes of its files; Disk the space they take, in which
	// blocks shared with containers (Reflinked) count too.
	Size      int64 `json:"size"`
	Disk      int64 `json:"disk"`
	Reflinked bool  `json:"reflinked"`
	// Leftover: no record names it (a run stopped while making it);
	// it is never used, and prune removes it. Damaged: it fails its
	// checks, and is not used.
	Leftover bool   `json:"leftover,omitempty"`
	Problem  string `json:"problem,omitempty"`
}

// name is the image as DIST/RELEASE/ARCH/VARIANT, for messages.
func (img cachedImage) name() string {
	return compat.PrintableLine(img.Dist + "/" + img.Release + "/" + img.Arch + "/" + img.Variant)
}

// keys lists the images in the store that the filter chooses, with or
// without an entry (a leftover download alone counts), in name order. The
// names are the layout the cache package documents.
func (op cacheOp) keys() ([]cachedImage, error) {
	var found []cachedImage
	seen := map[cache.Key]int{}
	dirs, err := filepath.Glob(filepath.Join(op.store.Root, "download", "*", "*", "*"))
	if err != nil {
		return nil, err
	}
	for _, dir := range dirs {
		names, err := os.ReadDir(dir)
		if err != nil {
			continue // not a directory: not the cache's
		}
		rel, _ := filepath.Rel(filepath.Join(op.store.Root, "download"), dir)
		parts := strings.Split(rel, string(filepath.Separator))
		for _, de := range names {
			variant, leftover := de.Name(), false
			if strings.HasPrefix(variant, ".") {
				v, ok := leftoverOf(variant)
				if !ok {
					continue
				}
				variant, leftover = v, true
			} else if !de.IsDir() {
				continue
			}
			k := cache.Key{Dist: parts[0], Release: parts[1], Arch: parts[2], Variant: variant}
			if k.Check() != nil || !op.chooses(k) {
				continue
			}
			i, ok := seen[k]
			if !ok {
				i = len(found)
				seen[k] = i
				found = append(found, cachedImage{Dist: k.Dist, Release: k.Release, Arch: k.Arch, Variant: k.Variant, key: k})
			}
			found[i].leftover = found[i].leftover || leftover
		}
	}
	sort.Slice(found, func(i, j int) bool {
		a, b := found[i].key, found[j].key
		return a.Dist+"\x00"+a.Release+"\x00"+a.Arch+"\x00"+a.Variant < b.Dist+"\x00"+b.Release+"\x00"+b.Arch+"\x00"+b.Variant
	})
	return found, nil
}

// leftoverOf reads the hidden sibling names of an entry (.VARIANT.stage,
// .tmp, .new, .old): what a download or an update left. Lock files are not
// leftovers: they are kept, and removing one under a waiting run would
// let two runs hold "the" lock.
func leftoverOf(name string) (variant string, ok bool) {
	for _, suffix := range []string{".stage", ".tmp", ".new", ".old"} {
		if v, found := strings.CutSuffix(name[1:], suffix); found && v != "" {
			return v, true
		}
	}
	return "", false
}

func (op cacheOp) chooses(k cache.Key) bool {
	f := op.filter
	return (f.Dist == "" || f.Dist == k.Dist) && (f.Release == "" || f.Release == k.Release) &&
		(f.Arch == "" || f.Arch == k.Arch) && (f.Variant == "" || f.Variant == k.Variant)
}

// inspect locks img's entry, looks it up (which checks it) and fills in
// what the cache knows of it, then calls fn with the entry (nil when there
// is none usable) while the lock is held. An entry another run holds for
// longer than a moment is reported as in use, and fn is not called.
func (op cacheOp) inspect(img *cachedImage, fn func(*cache.Entry) error) error {
	ctx, cancel := context.WithTimeout(op.ctx, 2*time.Second)
	defer cancel()
	unlock, err := op.store.Lock(ctx, img.key)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && op.ctx.Err() == nil {
			img.Status, img.Problem = "in use", "another run holds its lock"
			return nil
		}
		return err
	}
	defer unlock()
	// Lookup says why it ignores a damaged entry in a warning.
	var why bytes.Buffer
	store := op.store
	store.Warn = &why
	e, err := store.Lookup(img.key)
	if err != nil {
		return err
	}
	switch {
	case e != nil && e.Trust.Verified:
		img.Status = "verified"
	case e != nil:
		img.Status = "unverified"
	case why.Len() > 0:
		img.Status = "damaged"
		img.Problem = strings.TrimSpace(strings.ReplaceAll(why.String(), "WARNING: ", ""))
	default:
		img.Status = "incomplete"
	}
	if e != nil {
		img.Build = e.BuildID
		fetched := e.Fetched.UTC()
		img.Fetched = &fetched
		img.Size = e.RootfsSize
		expires := fetched.Add(cache.MaxAge)
		if data, ok := e.MetaFiles().Relevant("expiry", op.mode); ok {
			if exp, err := compat.ParseExpiry(data); err == nil && exp.Before(expires) {
				expires = exp.UTC()
			}
		}
		img.Expires = &expires
		img.Expired = !op.now.Before(expires)
		u, found, err := e.UnpackedUsage()
		if err != nil {
			return err
		}
		if found {
			img.Unpacked = &unpackedUse{Files: u.Files, Size: u.Bytes, Disk: u.Allocated, Reflinked: u.Reflinked, Leftover: u.Orphan}
			if !u.Orphan {
				// The manifest and the copy's directory are checked
				// (verify checks every file too).
				if c, err := e.OpenUnpacked(); err != nil {
					img.Unpacked.Problem = err.Error()
				} else {
					c.Close()
				}
			}
		}
	}
	return fn(e)
}

// list reports every chosen image.
func (op cacheOp) list() error {
	imgs, err := op.keys()
	if err != nil {
		return err
	}
	for i := range imgs {
		if err := op.inspect(&imgs[i], func(*cache.Entry) error { return nil }); err != nil {
			return err
		}
	}
	return op.report(imgs, false)
}

// verify checks every chosen image again, as a template run does before
// it uses one, but whole: the evidence kept in its record (signed
// SHA256SUMS or the files' signatures) must verify with the built-in key
// or the keys of keyring and vouch for the meta tarball and for every byte
// of the rootfs tarball. It fails when one does not verify.
func (op cacheOp) verify(keyring string) error {
	var kr openpgp.EntityList
	var err error
	if keyring != "" {
		kr, err = fetch.ReadKeyring(keyring)
	} else {
		kr, err = fetch.BuiltinKeyring()
	}
	if err != nil {
		return err
	}
	imgs, err := op.keys()
	if err != nil {
		return err
	}
	var failed []string
	for i := range imgs {
		img := &imgs[i]
		err := op.inspect(img, func(e *cache.Entry) error {
			if e == nil || img.Status != "verified" {
				return nil
			}
			if err := recheckEntry(kr, e); err != nil {
				img.Status, img.Problem = "damaged", err.Error()
			} else if err := verifyUnpacked(op.ctx, e, img); err != nil {
				img.Status, img.Problem = "damaged", "unpacked copy: "+err.Error()
			}
			return nil
		})
		if err != nil {
			return err
		}
		if img.Status != "verified" && img.Status != "in use" {
			failed = append(failed, img.name())
		}
	}
	if err := op.report(imgs, false); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d cached images failed verification: %s", len(failed), len(imgs), strings.Join(failed, ", "))
	}
	return nil
}

// recheckEntry verifies the entry e again with the keys kr: its evidence,
// its meta tarball, and its rootfs tarball read to the end.
func recheckEntry(kr openpgp.EntityList, e *cache.Entry) error {
	ev := fetch.Evidence{SHA256SUMS: e.Trust.SHA256SUMS, SHA256SUMSSig: e.Trust.SHA256SUMSSig, Signatures: e.Trust.Signatures}
	check, err := fetch.Recheck(kr, ev, fetch.MetaFile, e.MetaSHA256)
	if err == nil && check != nil {
		check.Write(e.MetaTarball())
		err = check.Finish()
	}
	if err != nil {
		return err
	}
	if check, err = fetch.Recheck(kr, ev, fetch.RootfsFile, e.RootfsSHA256); err != nil {
		return err
	}
	rootfs, err := e.OpenRootfs()
	if err != nil {
		return err
	}
	defer rootfs.Close()
	var w io.Writer = io.Discard
	if check != nil {
		w = check
	}
	if _, err := io.Copy(w, rootfs); err != nil {
		return err
	}
	if check != nil {
		return check.Finish()
	}
	return nil
}

// verifyUnpacked checks every file of e's unpacked copy, if it has one.
func verifyUnpacked(ctx context.Context, e *cache.Entry, img *cachedImage) error {
	if img.Unpacked == nil {
		return nil
	}
	if img.Unpacked.Problem != "" {
		return errors.New(img.Unpacked.Problem)
	}
	if img.Unpacked.Leftover {
		return nil
	}
	u, err := e.OpenUnpacked()
	if err != nil {
		return err
	}
	defer u.Close()
	return u.Verify(ctx)
}

// prune removes expired and damaged entries, those fetched more than age
// ago (when age is not 0), and every leftover download; of the entries
// that stay, leftover and damaged unpacked copies, and, with unpacked,
// every unpacked copy.
func (op cacheOp) prune(age time.Duration, unpacked bool) error {
	imgs, err := op.keys()
	if err != nil {
		return err
	}
	for i := range imgs {
		img := &imgs[i]
		err := op.inspect(img, func(e *cache.Entry) error {
			old := e != nil && age > 0 && img.Fetched != nil && op.now.Sub(*img.Fetched) > age
			switch {
			case img.Expired || old || img.Status == "damaged" || img.Status == "incomplete":
				return op.remove(img, "removed")
			case img.leftover:
				if err := op.removeLeftover(img); err != nil {
					return err
				}
			}
			if u := img.Unpacked; u != nil && (unpacked || u.Leftover || u.Problem != "") {
				return op.removeUnpacked(img)
			}
			if img.Action == "" {
				img.Action = "kept"
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return op.report(imgs, true)
}

// flush removes every chosen entry.
func (op cacheOp) flush() error {
	imgs, err := op.keys()
	if err != nil {
		return err
	}
	var busy []string
	for i := range imgs {
		err := op.inspect(&imgs[i], func(*cache.Entry) error { return op.remove(&imgs[i], "removed") })
		if err != nil {
			return err
		}
		if imgs[i].Status == "in use" {
			busy = append(busy, imgs[i].name())
		}
	}
	if err := op.report(imgs, true); err != nil {
		return err
	}
	if len(busy) > 0 {
		return fmt.Errorf("in use by another run, not removed: %s", strings.Join(busy, ", "))
	}
	return nil
}

// remove flushes img's entry and its leftovers, or says it would.
func (op cacheOp) remove(img *cachedImage, done string) error {
	if op.dryRun {
		img.Action = "would remove"
		return nil
	}
	if err := op.store.Flush(img.key); err != nil {
		return err
	}
	img.Action = done
	return nil
}

// removeLeftover removes what an interrupted download or update left
// beside a good entry (partial downloads too: prune is asked for).
func (op cacheOp) removeLeftover(img *cachedImage) error {
	if op.dryRun {
		img.Action = "would remove leftover download"
		return nil
	}
	st, err := op.store.Stage(img.key)
	if err != nil {
		return err
	}
	st.Cleanup()
	img.Action = "removed leftover download"
	return nil
}

// removeUnpacked removes img's unpacked copy (the image stays).
func (op cacheOp) removeUnpacked(img *cachedImage) error {
	done := "removed"
	if op.dryRun {
		done = "would remove"
	} else if _, err := op.store.DropUnpacked(img.key); err != nil {
		return err
	}
	if img.Action == "" {
		img.Action = done + " unpacked copy"
	} else {
		img.Action += " and unpacked copy"
	}
	return nil
}

// report writes imgs as a table or as JSON; withAction adds what prune or
// flush did.
func (op cacheOp) report(imgs []cachedImage, withAction bool) error {
	if op.format == "json" {
		if imgs == nil {
			imgs = []cachedImage{}
		}
		b, err := json.Marshal(imgs)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(op.out, "%s\n", b)
		return err
	}
	tw := tabwriter.NewWriter(op.out, 1, 8, 2, ' ', 0)
	head := "DIST\tRELEASE\tARCH\tVARIANT\tBUILD\tSIZE\tUNPACKED\tFETCHED\tEXPIRES\tSTATUS"
	if withAction {
		head += "\tACTION"
	}
	fmt.Fprintln(tw, head)
	for _, img := range imgs {
		status := img.Status
		if img.Expired {
			status += ", expired"
		}
		if img.Problem != "" {
			status += ": " + compat.PrintableLine(img.Problem)
		}
		line := strings.Join([]string{img.Dist, img.Release, img.Arch, img.Variant, dash(img.Build),
			dash(size(img.Size)), dash(img.Unpacked.text()), dash(date(img.Fetched)), dash(date(img.Expires))}, "\t")
		if withAction {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", line, status, img.Action)
		} else {
			fmt.Fprintf(tw, "%s\t%s\n", line, status)
		}
	}
	return tw.Flush()
}

// text says an unpacked copy's disk use in the table.
func (u *unpackedUse) text() string {
	switch {
	case u == nil:
		return ""
	case u.Leftover:
		return size(u.Disk) + " leftover"
	case u.Problem != "":
		return size(u.Disk) + " damaged"
	case u.Reflinked:
		return size(u.Disk) + " shared"
	}
	return size(u.Disk)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func date(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04")
}

// size is n bytes in MB (10^6), as the download progress shows sizes.
func size(n int64) string {
	if n == 0 {
		return ""
	}
	return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + " MB"
}

// parseAge reads --older-than: a Go duration (36h, 90m), or days (7d).
// Empty is 0: no age limit.
func parseAge(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err == nil && n > 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, usageErrorf("--older-than must be an age such as 7d, 36h or 90m, not %q", s)
}
