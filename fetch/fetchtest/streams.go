package fetchtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// Paths of the simplestreams a server publishes once EnableStreams is
// called, as images.linuxcontainers.org does for Incus and LXD, each with
// a detached signature at PATH.gpg unless StreamsOptions.Unsigned.
const (
	StreamsIndexPath  = "/streams/v1/index.json"
	StreamsImagesPath = "/streams/v1/images.json"
	// StreamsSignatureSuffix is the suffix of a streams file's signature.
	StreamsSignatureSuffix = ".gpg"
)

// StreamsOptions says how a server publishes its simplestreams.
type StreamsOptions struct {
	// Unsigned publishes no .gpg signatures: the streams are then only a
	// discovery aid.
	Unsigned bool
	// BinarySignatures makes the .gpg files binary OpenPGP signatures.
	// By default they are armored, as simplestreams tools write them
	// (gpg --armor --detach-sign, named .gpg all the same).
	BinarySignatures bool
	// SigningKey signs the streams instead of the server's Key, e.g. a
	// key the client does not trust.
	SigningKey *openpgp.Entity
	// ReleaseAliases are other names of releases by "DIST/RELEASE"
	// ("debian/bookworm": {"12"}); nil means DefaultReleaseAliases. A
	// product DIST:RELEASE:ARCH:VARIANT gets the aliases DIST/R/VARIANT
	// for RELEASE and each other name R, and DIST/R too for the variant
	// "default", as the real server writes them.
	ReleaseAliases map[string][]string
	// Aliases replaces, by product key (ProductKey), a product's aliases
	// with the given text as it is (comma-separated).
	Aliases map[string]string
	// ReleaseTitles are release titles by "DIST/RELEASE"; the release
	// itself otherwise.
	ReleaseTitles map[string]string
	// NoIncusItems leaves out the items Incus uses (incus.tar.xz,
	// lxd.tar.xz, squashfs and deltas), which are otherwise listed and
	// served in every build directory next to the LXC files.
	NoIncusItems bool
}

// DefaultReleaseAliases are the other names of the releases of
// DefaultImage and its kin.
var DefaultReleaseAliases = map[string][]string{
	"debian/bookworm": {"12"},
	"debian/trixie":   {"13"},
	"ubuntu/noble":    {"24.04"},
	"ubuntu/jammy":    {"22.04"},
}

// streamsState is what a server publishing streams keeps.
type streamsState struct {
	opts StreamsOptions
	// retained are builds served and listed in the streams but not in
	// the index.
	retained []Image
	// removed are build directories gone from the server.
	removed map[string]bool
	// rootfs are the size and sha256 of each build's rootfs.tar.xz as
	// first published, so that changing the file later (Set, SetRootfs)
	// leaves the streams naming the old one until RefreshStreams.
	rootfs map[string]streamsFile
}

type streamsFile struct {
	size int64
	sum  string
}

// ProductKey is img's product in the streams, "DIST:RELEASE:ARCH:VARIANT".
func ProductKey(img Image) string {
	return img.Dist + ":" + img.Release + ":" + img.Arch + ":" + img.Variant
}

// EnableStreams makes the server publish simplestreams for its images
// (those of the index and the retained builds of AddRetainedBuild), and
// keep them current as images are added or removed. Calling it again
// changes the options.
func (s *Server) EnableStreams(opts StreamsOptions) error {
	s.mu.Lock()
	if s.streams == nil {
		s.streams = &streamsState{removed: map[string]bool{}, rootfs: map[string]streamsFile{}}
	}
	s.streams.opts = opts
	s.mu.Unlock()
	return s.rebuildStreams()
}

// AddRetainedBuild publishes img's build directory (rootfs and meta
// tarballs, SHA256SUMS, signatures) and lists it in the streams as a build
// of its product, without changing the index: an older build the server
// still retains, or a newer one the index does not name yet. It enables
// the streams with default options if they are not.
func (s *Server) AddRetainedBuild(img Image) error {
	if err := s.putImage(img); err != nil {
		return err
	}
	s.mu.Lock()
	if s.streams == nil {
		s.streams = &streamsState{removed: map[string]bool{}, rootfs: map[string]streamsFile{}}
	}
	s.streams.retained = append(s.streams.retained, img)
	delete(s.streams.removed, ImageDir(img))
	s.mu.Unlock()
	return s.rebuildStreams()
}

// RemoveBuild removes img's build directory from the server (every file
// in it answers 404 from now on) and from the streams. The index is left
// as it is: if it names the build, the index now names a build that is
// gone.
func (s *Server) RemoveBuild(img Image) error {
	dir := ImageDir(img)
	s.mu.Lock()
	for p := range s.objects {
		if strings.HasPrefix(p, dir) {
			delete(s.objects, p)
		}
	}
	if s.streams != nil {
		s.streams.removed[dir] = true
	}
	s.mu.Unlock()
	return s.rebuildStreams()
}

// RefreshStreams writes the streams again from the files as the server
// serves them now (after SetRootfs, say), signed.
func (s *Server) RefreshStreams() error {
	s.mu.Lock()
	if s.streams != nil {
		clear(s.streams.rootfs)
	}
	s.mu.Unlock()
	return s.rebuildStreams()
}

// TamperStreams serves edit's result in place of the streams file at p
// (StreamsIndexPath or StreamsImagesPath). Unless resign, its signature is
// left as it was: a real signature by the server's key, of the old
// content. The next change of images (AddImage, AddRetainedBuild,
// RemoveBuild, RefreshStreams) writes the streams again.
func (s *Server) TamperStreams(p string, edit func([]byte) []byte, resign bool) {
	p = cleanPath(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	var old []byte
	if o := s.objects[p]; o != nil {
		old = bytes.Clone(o.data)
	}
	data := edit(old)
	s.putLocked(p, data)
	if resign && s.streams != nil && !s.streams.opts.Unsigned {
		s.putLocked(p+StreamsSignatureSuffix, s.signStreamsLocked(data))
	}
}

// StreamsBuilds are the builds the streams list for img's product, newest
// first.
func (s *Server) StreamsBuilds(img Image) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, b := range s.streamsImagesLocked() {
		if ProductKey(b) == ProductKey(img) {
			out = append(out, b.Build)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out
}

// IncusItem is the content the server serves for one of the Incus items of
// img's build directory (name is incus.tar.xz, lxd.tar.xz or
// rootfs.squashfs): a few bytes that are not what their names say, since
// only their sums matter here.
func IncusItem(img Image, name string) []byte {
	return []byte(fmt.Sprintf("fetchtest %s of %s\n", name, ImageDir(img)))
}

// streamsImagesLocked are the builds the streams list: the index's images
// and the retained builds, each directory once, less the removed ones.
// Called with s.mu held.
func (s *Server) streamsImagesLocked() []Image {
	if s.streams == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []Image
	for _, img := range append(append([]Image(nil), s.images...), s.streams.retained...) {
		dir := ImageDir(img)
		if seen[dir] || s.streams.removed[dir] {
			continue
		}
		seen[dir] = true
		out = append(out, img)
	}
	return out
}

// rebuildStreams writes index.json and images.json (and their signatures)
// for the server's images; nothing if the streams are not enabled.
func (s *Server) rebuildStreams() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams
	if st == nil {
		return nil
	}
	builds := map[string][]Image{}
	for _, img := range s.streamsImagesLocked() {
		builds[ProductKey(img)] = append(builds[ProductKey(img)], img)
	}
	keys := make([]string, 0, len(builds))
	for k := range builds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	updated := time.Now().UTC().Format(time.RFC1123Z)

	products := map[string]any{}
	for _, key := range keys {
		imgs := builds[key]
		sort.Slice(imgs, func(i, j int) bool { return imgs[i].Build < imgs[j].Build })
		first := imgs[0]
		versions := map[string]any{}
		for i, img := range imgs {
			items, err := s.streamsItemsLocked(img, imgs[:i])
			if err != nil {
				return err
			}
			versions[img.Build] = map[string]any{"items": items}
		}
		title := first.Release
		if t, ok := st.opts.ReleaseTitles[first.Dist+"/"+first.Release]; ok {
			title = t
		}
		aliases, ok := st.opts.Aliases[key]
		if !ok {
			aliases = defaultAliases(first, st.opts.ReleaseAliases)
		}
		products[key] = map[string]any{
			"aliases":       aliases,
			"arch":          first.Arch,
			"os":            strings.ToUpper(first.Dist[:1]) + first.Dist[1:],
			"release":       first.Release,
			"release_title": title,
			"variant":       first.Variant,
			"requirements":  map[string]any{},
			"versions":      versions,
		}
	}
	images, err := json.Marshal(map[string]any{
		"content_id": "images",
		"datatype":   "image-downloads",
		"format":     "products:1.0",
		"updated":    updated,
		"products":   products,
	})
	if err != nil {
		return fmt.Errorf("fetchtest: images.json: %w", err)
	}
	index, err := json.Marshal(map[string]any{
		"format": "index:1.0",
		"index": map[string]any{
			"images": map[string]any{
				"datatype": "image-downloads",
				"path":     strings.TrimPrefix(StreamsImagesPath, "/"),
				"format":   "products:1.0",
				"updated":  updated,
				"products": keys,
			},
		},
	})
	if err != nil {
		return fmt.Errorf("fetchtest: index.json: %w", err)
	}
	for p, data := range map[string][]byte{StreamsIndexPath: index, StreamsImagesPath: images} {
		s.putLocked(p, data)
		if st.opts.Unsigned {
			delete(s.objects, p+StreamsSignatureSuffix)
		} else {
			s.putLocked(p+StreamsSignatureSuffix, s.signStreamsLocked(data))
		}
	}
	return nil
}

// defaultAliases are the aliases of img's product as the real server
// writes them: DIST/RELEASE/VARIANT and the same with each other name of
// the release, then, for the default variant, DIST/RELEASE and DIST/NAME.
func defaultAliases(img Image, releaseAliases map[string][]string) string {
	if releaseAliases == nil {
		releaseAliases = DefaultReleaseAliases
	}
	names := append([]string{img.Release}, releaseAliases[img.Dist+"/"+img.Release]...)
	var out []string
	for _, n := range names {
		out = append(out, img.Dist+"/"+n+"/"+img.Variant)
	}
	if img.Variant == "default" {
		for _, n := range names {
			out = append(out, img.Dist+"/"+n)
		}
	}
	return strings.Join(out, ",")
}

// streamsItemsLocked are the items of img's build: the LXC rootfs and,
// unless NoIncusItems, the Incus ones, which it serves; older are the
// product's older builds, for the delta. Called with s.mu held.
func (s *Server) streamsItemsLocked(img Image, older []Image) (map[string]any, error) {
	dir := ImageDir(img)
	rel := strings.TrimPrefix(dir, "/")
	rootfs, ok := s.streams.rootfs[dir]
	if !ok {
		o := s.objects[dir+"rootfs.tar.xz"]
		if o == nil {
			return nil, fmt.Errorf("fetchtest: streams: %srootfs.tar.xz is not served", dir)
		}
		sum := sha256.Sum256(o.data)
		rootfs = streamsFile{size: int64(len(o.data)), sum: hex.EncodeToString(sum[:])}
		s.streams.rootfs[dir] = rootfs
	}
	items := map[string]any{
		"root.tar.xz": map[string]any{"ftype": "root.tar.xz", "path": rel + "rootfs.tar.xz", "sha256": rootfs.sum, "size": rootfs.size},
	}
	if s.streams.opts.NoIncusItems {
		return items, nil
	}
	file := func(name string) (string, int) {
		data := IncusItem(img, name)
		if s.objects[dir+name] == nil {
			s.putLocked(dir+name, data)
		}
		sum := sha256.Sum256(data)
		return hex.EncodeToString(sum[:]), len(data)
	}
	combined := func(meta, root string) string {
		h := sha256.New()
		h.Write(IncusItem(img, meta))
		if root == "rootfs.tar.xz" {
			if o := s.objects[dir+root]; o != nil {
				h.Write(o.data)
			}
		} else {
			h.Write(IncusItem(img, root))
		}
		return hex.EncodeToString(h.Sum(nil))
	}
	incusSum, incusSize := file("incus.tar.xz")
	lxdSum, lxdSize := file("lxd.tar.xz")
	squashSum, squashSize := file("rootfs.squashfs")
	items["incus.tar.xz"] = map[string]any{"ftype": "incus.tar.xz", "path": rel + "incus.tar.xz", "sha256": incusSum, "size": incusSize,
		"combined_sha256": combined("incus.tar.xz", "rootfs.tar.xz"), "combined_rootxz_sha256": combined("incus.tar.xz", "rootfs.tar.xz"),
		"combined_squashfs_sha256": combined("incus.tar.xz", "rootfs.squashfs")}
	items["lxd.tar.xz"] = map[string]any{"ftype": "lxd.tar.xz", "path": rel + "lxd.tar.xz", "sha256": lxdSum, "size": lxdSize,
		"combined_sha256": combined("lxd.tar.xz", "rootfs.tar.xz"), "combined_squashfs_sha256": combined("lxd.tar.xz", "rootfs.squashfs")}
	items["root.squashfs"] = map[string]any{"ftype": "squashfs", "path": rel + "rootfs.squashfs", "sha256": squashSum, "size": squashSize}
	if len(older) > 0 {
		base := older[len(older)-1].Build
		name := "rootfs." + base + ".vcdiff"
		sum, size := file(name)
		items["delta-"+base] = map[string]any{"ftype": "squashfs.vcdiff", "path": path.Join(rel, name), "sha256": sum, "size": size, "delta_base": base}
	}
	return items, nil
}

// signStreamsLocked is the .gpg of a streams file. Called with s.mu held.
func (s *Server) signStreamsLocked(data []byte) []byte {
	key := s.streams.opts.SigningKey
	if key == nil {
		key = s.Key
	}
	if !s.streams.opts.BinarySignatures {
		return Sign(key, data)
	}
	var buf bytes.Buffer
	if err := openpgp.DetachSign(&buf, key, bytes.NewReader(data), keyConfig); err != nil {
		panic(fmt.Sprintf("fetchtest: sign with %X: %v", key.PrimaryKey.Fingerprint, err))
	}
	return buf.Bytes()
}
