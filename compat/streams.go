package compat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The image server publishes, next to the LXC index, the simplestreams
// that Incus and LXD read: streams/v1/index.json names the product
// catalogue streams/v1/images.json, whose products are the images
// (DIST:RELEASE:ARCH:VARIANT) with every build the server still retains
// and, per build, the files of its directory with their sizes and sha256.

// Paths of the simplestreams on the server, below its root.
const (
	// StreamsIndexPath is the simplestreams index.
	StreamsIndexPath = "streams/v1/index.json"
	// StreamsSignatureSuffix is added to a simplestreams file's path for
	// its detached OpenPGP signature, as simplestreams tools publish it
	// (armored, despite the name).
	StreamsSignatureSuffix = ".gpg"
)

// Limits on the simplestreams, which come from the network. The real
// server's images.json holds about two thousand products with three
// builds each and is some megabytes long; its index.json lists the
// products again.
const (
	// MaxStreamsIndexSize is the most bytes of index.json.
	MaxStreamsIndexSize = 16 << 20
	// MaxStreamsSize is the most bytes of images.json.
	MaxStreamsSize = 64 << 20
	// MaxStreamsProducts is the most products a catalogue may have.
	MaxStreamsProducts = 100_000
	// MaxProductBuilds is the most builds (versions) one product may have.
	MaxProductBuilds = 1000
	// MaxBuildItems is the most files (items) one build may list.
	MaxBuildItems = 1000
	// MaxProductAliases is the most aliases one product may have.
	MaxProductAliases = 256
	// MaxItemSize bounds an item's size (1 TiB): no image file is near it,
	// and it keeps sums of sizes far from overflowing.
	MaxItemSize = 1 << 40
)

// Simplestreams file types (an item's ftype) this program knows.
const (
	// RootfsFileType is the ftype of the LXC rootfs, rootfs.tar.xz.
	RootfsFileType = "root.tar.xz"
	// RootfsFile and MetaFile are the names of the files of an LXC build
	// directory. meta.tar.xz is not an item of the streams: the build
	// directory's signed SHA256SUMS covers it.
	RootfsFile = "rootfs.tar.xz"
	MetaFile   = "meta.tar.xz"
)

// BuildIDLayout is the time layout of a build id ("20261120_05:24"), the
// UTC time the image was built; the LXC index and the streams use the
// same ids.
const BuildIDLayout = "20060102_15:04"

// StreamsIndex is a parsed streams/v1/index.json: where the image
// catalogue is and which products it announces.
type StreamsIndex struct {
	// ImagesPath is the path of the image catalogue below the server
	// root, as the index gives it ("streams/v1/images.json").
	ImagesPath string
	// Products are the product keys the index announces, in its order.
	Products []string
	// Updated is the index's "updated" field as it stands (simplestreams
	// tools write RFC 1123 dates), "" if absent.
	Updated string
}

// Streams is a parsed image catalogue (streams/v1/images.json).
type Streams struct {
	// ContentID is the catalogue's content_id ("images").
	ContentID string
	// Updated is its "updated" field as it stands, "" if absent.
	Updated string
	// Products are its products sorted by key.
	Products []Product
}

// Product is one image of the catalogue, in every build the server still
// retains.
type Product struct {
	// Key is the product's name in the catalogue,
	// "DIST:RELEASE:ARCH:VARIANT".
	Key string
	// Dist, Release, Arch and Variant are the parts of Key, which the
	// product's arch, release and variant fields repeat; they are the keys
	// of the LXC index.
	Dist, Release, Arch, Variant string
	// OS is the title of the distribution ("Debian"), ReleaseTitle that of
	// the release; both may be empty and are for display only.
	OS, ReleaseTitle string
	// Aliases are the product's aliases in the catalogue's order
	// ("debian/12", "debian/bookworm/default"): the server writes them
	// without the architecture.
	Aliases []string
	// Requirements are the product's requirements whose values are
	// strings (Incus reads them; LXC does not).
	Requirements map[string]string
	// Builds are the product's builds, newest first, including those
	// that have no LXC rootfs.
	Builds []Build
}

// Build is one retained build of a product: one directory on the server.
type Build struct {
	// ID is the build id ("20261120_05:24").
	ID string
	// Dir is the build directory on the server in the form of an LXC
	// index path, "/images/DIST/RELEASE/ARCH/VARIANT/BUILD/", derived from
	// the rootfs item's path; "" when the build has no LXC rootfs.
	Dir string
	// Rootfs is the LXC rootfs (ftype root.tar.xz, file rootfs.tar.xz),
	// nil for a build that has none (an Incus-only one).
	Rootfs *Item
	// Ignored counts the items this program has no use for (Incus and LXD
	// metadata, squashfs, VM disks, deltas, anything unknown).
	Ignored int
}

// Item is one file of a build as the catalogue describes it.
type Item struct {
	// Name is the item's name in the build ("root.tar.xz").
	Name string
	// Path is the file's path below the server root as the catalogue
	// gives it ("images/debian/bookworm/amd64/default/20261120_05:24/rootfs.tar.xz").
	Path string
	// SHA256 is the file's SHA-256 in lower-case hexadecimal.
	SHA256 string
	// Size is the file's size in bytes.
	Size int64
}

// HasRootfs reports whether the build can be used by LXC: it has a
// rootfs (and so a build directory with meta.tar.xz and SHA256SUMS).
func (b Build) HasRootfs() bool { return b.Rootfs != nil }

// Time is the build's time, from its id (UTC).
func (b Build) Time() time.Time {
	t, _ := time.Parse(BuildIDLayout, b.ID)
	return t
}

// Entry is the build as a line of the LXC index would name it, for the
// download code: its files are Entry.File(MetaFile) and so on. The build
// must have a rootfs.
func (p *Product) Entry(b Build) Entry {
	return Entry{Dist: p.Dist, Release: p.Release, Arch: p.Arch, Variant: p.Variant, Build: b.ID, Path: b.Dir}
}

// Name is the product's name as the listing shows it and filters match
// it, "DIST/RELEASE/ARCH/VARIANT": the image's directory on the server.
func (p *Product) Name() string {
	return p.Dist + "/" + p.Release + "/" + p.Arch + "/" + p.Variant
}

// Build returns the product's build with the given id.
func (p *Product) Build(id string) (Build, bool) {
	for _, b := range p.Builds {
		if b.ID == id {
			return b, true
		}
	}
	return Build{}, false
}

// Newest is the product's newest build that has an LXC rootfs.
func (p *Product) Newest() (Build, bool) {
	for _, b := range p.Builds {
		if b.HasRootfs() {
			return b, true
		}
	}
	return Build{}, false
}

// Product returns the product whose four keys are those of q exactly.
func (s *Streams) Product(q Query) (*Product, bool) {
	if s == nil {
		return nil, false
	}
	key := ProductKey(q.Dist, q.Release, q.Arch, q.Variant)
	i, ok := slices.BinarySearchFunc(s.Products, key, func(p Product, k string) int { return strings.Compare(p.Key, k) })
	if !ok {
		return nil, false
	}
	return &s.Products[i], true
}

// ProductKey is the catalogue's name of an image, "DIST:RELEASE:ARCH:VARIANT".
func ProductKey(dist, release, arch, variant string) string {
	return dist + ":" + release + ":" + arch + ":" + variant
}

// ParseStreamsIndex parses streams/v1/index.json. It must be an
// "index:1.0" document with exactly one catalogue of datatype
// "image-downloads", whose path is checked as the LXC index's paths are.
// Other catalogues are ignored.
func ParseStreamsIndex(data []byte) (*StreamsIndex, error) {
	if len(data) > MaxStreamsIndexSize {
		return nil, fmt.Errorf("streams index: %d bytes, more than the limit of %d", len(data), MaxStreamsIndexSize)
	}
	if !utf8.Valid(data) {
		return nil, errors.New("streams index: not valid UTF-8")
	}
	var doc struct {
		Format *string                    `json:"format"`
		Index  map[string]json.RawMessage `json:"index"`
	}
	if err := strictUnmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("streams index: %w", err)
	}
	if doc.Format == nil || *doc.Format != "index:1.0" {
		return nil, fmt.Errorf("streams index: format is %s, want \"index:1.0\"", quoteOpt(doc.Format))
	}
	names := make([]string, 0, len(doc.Index))
	for name := range doc.Index {
		names = append(names, name)
	}
	slices.Sort(names)
	var found *StreamsIndex
	var foundName string
	for _, name := range names {
		var cat struct {
			DataType string   `json:"datatype"`
			Path     string   `json:"path"`
			Format   string   `json:"format"`
			Products []string `json:"products"`
			Updated  string   `json:"updated"`
		}
		// Catalogues of other kinds may look different: only an
		// image-downloads one must be well formed.
		var kind struct {
			DataType any `json:"datatype"`
		}
		if err := json.Unmarshal(doc.Index[name], &kind); err != nil || kind.DataType != "image-downloads" {
			continue
		}
		if err := strictUnmarshal(doc.Index[name], &cat); err != nil {
			return nil, fmt.Errorf("streams index: catalogue %q: %w", name, err)
		}
		if found != nil {
			return nil, fmt.Errorf("streams index: catalogues %q and %q are both image-downloads; want one", foundName, name)
		}
		if cat.Format != "products:1.0" {
			return nil, fmt.Errorf("streams index: catalogue %q: format is %q, want \"products:1.0\"", name, cat.Format)
		}
		if cat.Path == "" {
			return nil, fmt.Errorf("streams index: catalogue %q has no path", name)
		}
		if err := checkStreamsString("path", cat.Path, MaxIndexPath); err != nil {
			return nil, fmt.Errorf("streams index: catalogue %q: %w", name, err)
		}
		if err := checkImagePath(cat.Path); err != nil {
			return nil, fmt.Errorf("streams index: catalogue %q: %w", name, err)
		}
		if len(cat.Products) > MaxStreamsProducts {
			return nil, fmt.Errorf("streams index: catalogue %q lists %d products, more than the limit of %d", name, len(cat.Products), MaxStreamsProducts)
		}
		for _, key := range cat.Products {
			if _, err := splitProductKey(key); err != nil {
				return nil, fmt.Errorf("streams index: catalogue %q: %w", name, err)
			}
		}
		if err := checkStreamsString("updated", cat.Updated, MaxIndexField); err != nil {
			return nil, fmt.Errorf("streams index: catalogue %q: %w", name, err)
		}
		found, foundName = &StreamsIndex{ImagesPath: cat.Path, Products: cat.Products, Updated: cat.Updated}, name
	}
	if found == nil {
		return nil, errors.New("streams index: no catalogue of datatype \"image-downloads\"")
	}
	return found, nil
}

// ParseStreams parses an image catalogue (streams/v1/images.json), a
// "products:1.0" document of datatype "image-downloads".
//
// Every product must be well formed, or the whole catalogue is refused
// with an error naming the product, the build, the item and the field
// ("streams: product "debian:bookworm:amd64:default": build
// "20261120_05:24": item "root.tar.xz": sha256 ..."), as ParseIndex
// refuses a whole index for one bad line: the catalogue is one generated
// document, and one that is wrong in part cannot be trusted for the rest.
// A product is well formed when its key has four non-empty parts that are
// valid names (no "/", not "." or ".."), its arch, release and variant
// fields equal those parts (os is a title and is not compared), its
// strings are short, valid UTF-8 without control characters, its build
// ids have the form YYYYMMDD_HH:MM, and each build has at most one LXC
// rootfs item (ftype root.tar.xz), with a sha256 of 64 lower-case
// hexadecimal digits, an integer size of at least 0 and a path, checked
// as an index path is, ending in BUILD/rootfs.tar.xz. Items of any other
// type are counted and otherwise ignored, whatever their fields hold.
// Unknown fields are ignored. JSON names that repeat within an object
// follow encoding/json (the last one wins).
func ParseStreams(data []byte) (*Streams, error) {
	if len(data) > MaxStreamsSize {
		return nil, fmt.Errorf("streams: %d bytes, more than the limit of %d", len(data), MaxStreamsSize)
	}
	if !utf8.Valid(data) {
		return nil, errors.New("streams: not valid UTF-8")
	}
	// One pass of encoding/json over the whole catalogue; only when it
	// fails is it decoded again level by level, to say where.
	var doc catalogueDoc
	if err := strictUnmarshal(data, &doc); err != nil || !doc.complete() {
		return nil, fmt.Errorf("streams: %w", locateStreamsError(data, err))
	}
	if doc.Format == nil || *doc.Format != "products:1.0" {
		return nil, fmt.Errorf("streams: format is %s, want \"products:1.0\"", quoteOpt(doc.Format))
	}
	if doc.DataType != nil && *doc.DataType != "image-downloads" {
		return nil, fmt.Errorf("streams: datatype is %q, want \"image-downloads\"", *doc.DataType)
	}
	if len(doc.Products) > MaxStreamsProducts {
		return nil, fmt.Errorf("streams: %d products, more than the limit of %d", len(doc.Products), MaxStreamsProducts)
	}
	s := &Streams{}
	for _, f := range []struct {
		name string
		v    *string
		out  *string
	}{{"content_id", doc.ContentID, &s.ContentID}, {"updated", doc.Updated, &s.Updated}} {
		if f.v == nil {
			continue
		}
		if err := checkStreamsString(f.name, *f.v, MaxIndexField); err != nil {
			return nil, fmt.Errorf("streams: %w", err)
		}
		*f.out = *f.v
	}
	keys := make([]string, 0, len(doc.Products))
	for key := range doc.Products {
		keys = append(keys, key)
	}
	// In key order: the products come out sorted, and the error for a
	// catalogue with several bad products is always about the same one.
	slices.Sort(keys)
	s.Products = make([]Product, 0, len(keys))
	for _, key := range keys {
		p, err := parseProduct(key, doc.Products[key])
		if err != nil {
			return nil, fmt.Errorf("streams: product %q: %w", PrintableLine(key), err)
		}
		s.Products = append(s.Products, p)
	}
	return s, nil
}

// catalogueDoc, productDoc, buildDoc and itemDoc are images.json as
// decoded in one pass. Item fields stay raw: only those of the rootfs item
// must be well formed.
type catalogueDoc struct {
	ContentID *string                `json:"content_id"`
	DataType  *string                `json:"datatype"`
	Format    *string                `json:"format"`
	Updated   *string                `json:"updated"`
	Products  map[string]*productDoc `json:"products"`
}

type productDoc struct {
	Aliases      string                     `json:"aliases"`
	Arch         string                     `json:"arch"`
	OS           string                     `json:"os"`
	Release      string                     `json:"release"`
	ReleaseTitle string                     `json:"release_title"`
	Variant      string                     `json:"variant"`
	Requirements map[string]json.RawMessage `json:"requirements"`
	Versions     map[string]*buildDoc       `json:"versions"`
}

type buildDoc struct {
	Items map[string]*itemDoc `json:"items"`
}

type itemDoc struct {
	FileType json.RawMessage `json:"ftype"`
	Path     json.RawMessage `json:"path"`
	SHA256   json.RawMessage `json:"sha256"`
	Size     json.RawMessage `json:"size"`
}

// isRootfs reports whether the item is the LXC rootfs.
func (it *itemDoc) isRootfs() bool {
	if it == nil {
		return false
	}
	if string(it.FileType) == `"`+RootfsFileType+`"` {
		return true
	}
	// The same, with escapes.
	var ftype string
	return bytes.IndexByte(it.FileType, '\\') >= 0 && json.Unmarshal(it.FileType, &ftype) == nil && ftype == RootfsFileType
}

// complete reports whether no product or build is JSON null, which
// decodes without an error but is not an object.
func (d *catalogueDoc) complete() bool {
	for _, p := range d.Products {
		if p == nil {
			return false
		}
		for _, b := range p.Versions {
			if b == nil {
				return false
			}
		}
	}
	return true
}

// locateStreamsError decodes a catalogue that did not decode in one pass
// level by level, for an error that names the product and build where it
// went wrong; failed is the error of the one pass, if it had one.
func locateStreamsError(data []byte, failed error) error {
	var top struct {
		Products map[string]json.RawMessage `json:"products"`
	}
	if err := strictUnmarshal(data, &top); err != nil {
		return err
	}
	keys := make([]string, 0, len(top.Products))
	for key := range top.Products {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	for _, key := range keys {
		var p struct {
			productDoc
			Versions map[string]json.RawMessage `json:"versions"`
		}
		err := strictUnmarshal(top.Products[key], &p)
		if err == nil {
			ids := make([]string, 0, len(p.Versions))
			for id := range p.Versions {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			for _, id := range ids {
				if err = locateBuildError(p.Versions[id]); err != nil {
					err = fmt.Errorf("build %q: %w", PrintableLine(id), err)
					break
				}
			}
		}
		if err != nil {
			return fmt.Errorf("product %q: %w", PrintableLine(key), err)
		}
	}
	if failed == nil {
		failed = errors.New("not a catalogue")
	}
	return failed
}

// strictUnmarshal is json.Unmarshal of one JSON value that must be an
// object, with a plain message for what went wrong.
func strictUnmarshal(data []byte, v any) error {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return errors.New("not a JSON object")
	}
	if err := json.Unmarshal(data, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return fmt.Errorf("%s is a JSON %s, not the %s it should be", typeErr.Field, typeErr.Value, jsonKind(typeErr.Type))
		}
		return fmt.Errorf("not valid JSON: %w", err)
	}
	return nil
}

// jsonKind names what a Go type holds the way a JSON document would.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Map, reflect.Struct:
		return "object"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 { // json.RawMessage
			return "value"
		}
		return "array"
	case reflect.String:
		return "string"
	}
	return t.Kind().String()
}

func quoteOpt(s *string) string {
	if s == nil {
		return "missing"
	}
	return strconv.Quote(PrintableLine(*s))
}

// splitProductKey splits and checks a product key.
func splitProductKey(key string) ([4]string, error) {
	var parts [4]string
	f := strings.Split(key, ":")
	if len(f) != 4 {
		return parts, fmt.Errorf("product key %q does not have the form DIST:RELEASE:ARCH:VARIANT", PrintableLine(key))
	}
	for i, v := range f {
		if err := checkName(productKeyNames[i], v); err != nil {
			return parts, fmt.Errorf("product key %q: %w", PrintableLine(key), err)
		}
		parts[i] = v
	}
	return parts, nil
}

var productKeyNames = [4]string{"dist", "release", "arch", "variant"}

// checkName checks a value that becomes a directory name in the cache and
// a part of the image's name.
func checkName(field, v string) error {
	if v == "" {
		return fmt.Errorf("%s is empty", field)
	}
	if err := checkStreamsString(field, v, MaxIndexField); err != nil {
		return err
	}
	if v == "." || v == ".." || strings.ContainsAny(v, "/\\") {
		return fmt.Errorf("%s %q is not a valid name", field, v)
	}
	return nil
}

// checkStreamsString checks a string of the streams that is kept: short,
// and free of control characters (the document is known to be UTF-8, but
// JSON escapes can still make them).
func checkStreamsString(field, v string, limit int) error {
	if len(v) > limit {
		return fmt.Errorf("%s is %d bytes, more than the limit of %d", field, len(v), limit)
	}
	if hasControl(v) {
		return fmt.Errorf("%s %q has a control character", field, PrintableLine(v))
	}
	if strings.ContainsRune(v, utf8.RuneError) {
		return fmt.Errorf("%s %q is not valid UTF-8", field, v)
	}
	return nil
}

// locateBuildError is the error of decoding one build, naming the item
// at fault.
func locateBuildError(data []byte) error {
	var b buildDoc
	err := strictUnmarshal(data, &b)
	if err == nil {
		return nil
	}
	var raw struct {
		Items map[string]json.RawMessage `json:"items"`
	}
	if strictUnmarshal(data, &raw) != nil {
		return err
	}
	names := make([]string, 0, len(raw.Items))
	for name := range raw.Items {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		var it *itemDoc
		if json.Unmarshal(raw.Items[name], &it) != nil {
			return fmt.Errorf("item %q: not a JSON object", PrintableLine(name))
		}
	}
	return err
}

// parseProduct checks one product and builds its model.
func parseProduct(key string, doc *productDoc) (Product, error) {
	parts, err := splitProductKey(key)
	if err != nil {
		return Product{}, err
	}
	p := Product{Key: key, Dist: parts[0], Release: parts[1], Arch: parts[2], Variant: parts[3],
		OS: doc.OS, ReleaseTitle: doc.ReleaseTitle}
	for _, f := range []struct{ name, got, want string }{
		{"release", doc.Release, p.Release}, {"arch", doc.Arch, p.Arch}, {"variant", doc.Variant, p.Variant},
	} {
		if f.got != f.want {
			return Product{}, fmt.Errorf("%s %q disagrees with the product key's %q", f.name, PrintableLine(f.got), f.want)
		}
	}
	if err := checkStreamsString("os", p.OS, MaxIndexField); err != nil {
		return Product{}, err
	}
	if err := checkStreamsString("release_title", p.ReleaseTitle, MaxIndexField); err != nil {
		return Product{}, err
	}
	if p.Aliases, err = parseAliases(doc.Aliases); err != nil {
		return Product{}, err
	}
	for k, v := range doc.Requirements {
		var s string
		if json.Unmarshal(v, &s) != nil {
			continue // not for LXC; Incus reads only strings
		}
		if err := checkStreamsString("requirement", k, MaxIndexField); err != nil {
			return Product{}, err
		}
		if err := checkStreamsString("requirement "+k, s, MaxIndexField); err != nil {
			return Product{}, err
		}
		if p.Requirements == nil {
			p.Requirements = map[string]string{}
		}
		p.Requirements[k] = s
	}
	if len(doc.Versions) > MaxProductBuilds {
		return Product{}, fmt.Errorf("%d builds, more than the limit of %d", len(doc.Versions), MaxProductBuilds)
	}
	for id, bd := range doc.Versions {
		b, err := parseBuild(id, bd)
		if err != nil {
			return Product{}, fmt.Errorf("build %q: %w", PrintableLine(id), err)
		}
		p.Builds = append(p.Builds, b)
	}
	// Ids of one shape sort as their times do.
	slices.SortFunc(p.Builds, func(a, b Build) int { return strings.Compare(b.ID, a.ID) })
	return p, nil
}

// parseAliases splits the comma-separated aliases, dropping empty ones
// and repeats.
func parseAliases(s string) ([]string, error) {
	if len(s) > MaxIndexPath {
		return nil, fmt.Errorf("aliases are %d bytes, more than the limit of %d", len(s), MaxIndexPath)
	}
	var out []string
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if a == "" || slices.Contains(out, a) {
			continue
		}
		if err := checkStreamsString("alias", a, MaxIndexField); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if len(out) > MaxProductAliases {
		return nil, fmt.Errorf("%d aliases, more than the limit of %d", len(out), MaxProductAliases)
	}
	return out, nil
}

// ValidBuildID reports whether id has the form of a build id,
// YYYYMMDD_HH:MM, with a real date and time.
func ValidBuildID(id string) bool {
	if len(id) != len(BuildIDLayout) {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch i {
		case 8:
			if c != '_' {
				return false
			}
		case 11:
			if c != ':' {
				return false
			}
		default:
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	_, err := time.Parse(BuildIDLayout, id)
	return err == nil
}

// parseBuild checks one version of a product and builds its model.
func parseBuild(id string, doc *buildDoc) (Build, error) {
	if !ValidBuildID(id) {
		return Build{}, errors.New("not a build id of the form YYYYMMDD_HH:MM")
	}
	if len(doc.Items) > MaxBuildItems {
		return Build{}, fmt.Errorf("%d items, more than the limit of %d", len(doc.Items), MaxBuildItems)
	}
	b := Build{ID: id}
	// In name order, so that which of two rootfs items an error names
	// does not depend on map order.
	names := make([]string, 0, len(doc.Items))
	for name := range doc.Items {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		it := doc.Items[name]
		if !it.isRootfs() {
			b.Ignored++
			continue
		}
		if b.Rootfs != nil {
			return Build{}, fmt.Errorf("items %q and %q are both of ftype %s", b.Rootfs.Name, PrintableLine(name), RootfsFileType)
		}
		rootfs, err := parseRootfsItem(id, name, it)
		if err != nil {
			return Build{}, fmt.Errorf("item %q: %w", PrintableLine(name), err)
		}
		b.Rootfs = &rootfs
		b.Dir = "/" + strings.TrimPrefix(path.Dir(rootfs.Path), "/") + "/"
	}
	return b, nil
}

// parseRootfsItem checks the LXC rootfs item of build id and builds its
// model.
func parseRootfsItem(id, name string, doc *itemDoc) (Item, error) {
	it := Item{Name: name}
	if err := checkStreamsString("item name", name, MaxIndexField); err != nil {
		return Item{}, err
	}
	if doc.SHA256 == nil {
		return Item{}, errors.New("has no sha256")
	}
	if json.Unmarshal(doc.SHA256, &it.SHA256) != nil || !isSHA256Hex(it.SHA256) {
		return Item{}, fmt.Errorf("sha256 %.80s is not 64 lower-case hexadecimal digits", PrintableLine(string(doc.SHA256)))
	}
	if doc.Size == nil {
		return Item{}, errors.New("has no size")
	}
	// A JSON number written as an integer, nothing else ("1e3", "12.0",
	// "\"12\"" are not sizes).
	n, err := strconv.ParseInt(string(doc.Size), 10, 64)
	if err != nil || n < 0 || n > MaxItemSize {
		return Item{}, fmt.Errorf("size %.40s is not a whole number of bytes from 0 to %d", PrintableLine(string(doc.Size)), int64(MaxItemSize))
	}
	it.Size = n
	if doc.Path == nil {
		return Item{}, errors.New("has no path")
	}
	if json.Unmarshal(doc.Path, &it.Path) != nil {
		return Item{}, fmt.Errorf("path %.80s is not a string", PrintableLine(string(doc.Path)))
	}
	if it.Path == "" {
		return Item{}, errors.New("has no path")
	}
	if err := checkStreamsString("path", it.Path, MaxIndexPath); err != nil {
		return Item{}, err
	}
	if err := checkImagePath(it.Path); err != nil {
		return Item{}, err
	}
	// The rest of the build (meta.tar.xz, SHA256SUMS) is found next to
	// the rootfs, in the directory named for the build.
	segs := strings.Split(strings.TrimPrefix(it.Path, "/"), "/")
	if len(segs) < 2 || segs[len(segs)-1] != RootfsFile || segs[len(segs)-2] != id {
		return Item{}, fmt.Errorf("path %q is not in the build's directory: want .../%s/%s", it.Path, id, RootfsFile)
	}
	for _, seg := range segs[:len(segs)-1] {
		if seg == "" || seg == "." {
			return Item{}, fmt.Errorf("path %q has an empty or \".\" segment", it.Path)
		}
	}
	return it, nil
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// SubsetStreams rewrites a simplestreams index and image catalogue to the
// products keep accepts, for a mirror that publishes only some images
// under a signature of its own. Both documents are checked first
// (ParseStreamsIndex, ParseStreams). The products kept are copied as the
// source wrote them (compacted), Incus items included; the other fields
// of both documents are kept as they are, but for the index's product
// list.
func SubsetStreams(index, images []byte, keep func(key string) bool) (newIndex, newImages []byte, err error) {
	if _, err := ParseStreamsIndex(index); err != nil {
		return nil, nil, err
	}
	if _, err := ParseStreams(images); err != nil {
		return nil, nil, err
	}
	var cat map[string]json.RawMessage
	var products map[string]json.RawMessage
	if err := json.Unmarshal(images, &cat); err != nil {
		return nil, nil, fmt.Errorf("streams: %w", err)
	}
	if err := json.Unmarshal(cat["products"], &products); err != nil {
		return nil, nil, fmt.Errorf("streams: products: %w", err)
	}
	kept := map[string]json.RawMessage{}
	keys := []string{}
	for k, v := range products {
		if keep(k) {
			kept[k] = v
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	if cat["products"], err = json.Marshal(kept); err != nil {
		return nil, nil, fmt.Errorf("streams: %w", err)
	}
	if newImages, err = json.Marshal(cat); err != nil {
		return nil, nil, fmt.Errorf("streams: %w", err)
	}

	var doc map[string]json.RawMessage
	var catalogues map[string]json.RawMessage
	if err := json.Unmarshal(index, &doc); err != nil {
		return nil, nil, fmt.Errorf("streams index: %w", err)
	}
	if err := json.Unmarshal(doc["index"], &catalogues); err != nil {
		return nil, nil, fmt.Errorf("streams index: %w", err)
	}
	for name, raw := range catalogues {
		var kind struct {
			DataType any `json:"datatype"`
		}
		if json.Unmarshal(raw, &kind) != nil || kind.DataType != "image-downloads" {
			continue
		}
		var c map[string]json.RawMessage
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, nil, fmt.Errorf("streams index: catalogue %q: %w", name, err)
		}
		if c["products"], err = json.Marshal(keys); err != nil {
			return nil, nil, fmt.Errorf("streams index: %w", err)
		}
		if catalogues[name], err = json.Marshal(c); err != nil {
			return nil, nil, fmt.Errorf("streams index: %w", err)
		}
	}
	if doc["index"], err = json.Marshal(catalogues); err != nil {
		return nil, nil, fmt.Errorf("streams index: %w", err)
	}
	if newIndex, err = json.Marshal(doc); err != nil {
		return nil, nil, fmt.Errorf("streams index: %w", err)
	}
	return newIndex, newImages, nil
}
