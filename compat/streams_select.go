package compat

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
)

// SelectStreams rewrites a simplestreams index and image catalogue to the
// items keep accepts, for a mirror that publishes some builds of some
// images under a signature of its own: keep is asked about every item of
// every build, with the product key, the build id, the item's name and its
// ftype. A build left without items is dropped, and so is a product left
// without builds (from the index's product list too). Both documents are
// checked first, as SubsetStreams checks them; what is kept is copied as
// the source wrote it, fields this program does not know included.
func SelectStreams(index, images []byte, keep func(product, build, item, ftype string) bool) (newIndex, newImages []byte, err error) {
	if _, err := ParseStreams(images); err != nil {
		return nil, nil, err
	}
	var cat map[string]json.RawMessage
	if err := json.Unmarshal(images, &cat); err != nil {
		return nil, nil, fmt.Errorf("streams: %w", err)
	}
	var products map[string]map[string]json.RawMessage
	if err := json.Unmarshal(cat["products"], &products); err != nil {
		return nil, nil, fmt.Errorf("streams: products: %w", err)
	}
	kept := map[string]bool{}
	for key, product := range products {
		var versions map[string]map[string]json.RawMessage
		if err := json.Unmarshal(product["versions"], &versions); err != nil {
			return nil, nil, fmt.Errorf("streams: product %q: versions: %w", PrintableLine(key), err)
		}
		for id, version := range versions {
			var items map[string]json.RawMessage
			if err := json.Unmarshal(version["items"], &items); err != nil {
				return nil, nil, fmt.Errorf("streams: product %q: build %q: items: %w", PrintableLine(key), PrintableLine(id), err)
			}
			for name, raw := range items {
				// Items of other kinds may look different: an ftype
				// that is not a string is "".
				var item struct {
					FileType any `json:"ftype"`
				}
				json.Unmarshal(raw, &item)
				ftype, _ := item.FileType.(string)
				if !keep(key, id, name, ftype) {
					delete(items, name)
				}
			}
			if len(items) == 0 {
				delete(versions, id)
				continue
			}
			if version["items"], err = json.Marshal(items); err != nil {
				return nil, nil, fmt.Errorf("streams: %w", err)
			}
		}
		if len(versions) == 0 {
			continue
		}
		if product["versions"], err = json.Marshal(versions); err != nil {
			return nil, nil, fmt.Errorf("streams: %w", err)
		}
		kept[key] = true
	}
	for key := range products {
		if !kept[key] {
			delete(products, key)
		}
	}
	if cat["products"], err = json.Marshal(products); err != nil {
		return nil, nil, fmt.Errorf("streams: %w", err)
	}
	selected, err := json.Marshal(cat)
	if err != nil {
		return nil, nil, fmt.Errorf("streams: %w", err)
	}
	return SubsetStreams(index, selected, func(key string) bool { return kept[key] })
}

// StreamsFile is a file of a build as the catalogue lists it, of any
// type: what a mirror copies for Incus besides the LXC rootfs.
type StreamsFile struct {
	// Item is the item's name in the build ("incus.tar.xz",
	// "delta-20261119_05:24"), FileType its ftype.
	Item, FileType string
	// Path is the file's path below the server root, SHA256 its digest in
	// lower-case hexadecimal, Size its length.
	Path   string
	SHA256 string
	Size   int64
}

// BuildFiles returns the files the catalogue lists for every build, by
// "PRODUCT BUILD" ("debian:bookworm:amd64:default 20261120_05:24"), each
// build's in item order. The catalogue must parse (ParseStreams); an item
// whose fields are not well formed (a path that is not an index path, a
// sha256 that is not 64 lower-case hexadecimal digits, a size that is not
// a whole number) is left out, as ParseStreams ignores what it does not
// use.
func BuildFiles(images []byte) (map[string][]StreamsFile, error) {
	if _, err := ParseStreams(images); err != nil {
		return nil, err
	}
	var doc catalogueDoc
	if err := json.Unmarshal(images, &doc); err != nil {
		return nil, fmt.Errorf("streams: %w", err)
	}
	out := map[string][]StreamsFile{}
	for key, p := range doc.Products {
		if p == nil {
			continue
		}
		for id, b := range p.Versions {
			if b == nil {
				continue
			}
			// In item order; sorting the names, not the files, needs
			// no sort code of its own in the binary.
			names := make([]string, 0, len(b.Items))
			for name := range b.Items {
				names = append(names, name)
			}
			slices.Sort(names)
			var files []StreamsFile
			for _, name := range names {
				if f, ok := streamsFile(name, b.Items[name]); ok {
					files = append(files, f)
				}
			}
			out[key+" "+id] = files
		}
	}
	return out, nil
}

// streamsFile checks an item of any type.
func streamsFile(name string, it *itemDoc) (StreamsFile, bool) {
	if it == nil || checkStreamsString("item name", name, MaxIndexField) != nil {
		return StreamsFile{}, false
	}
	f := StreamsFile{Item: name}
	if json.Unmarshal(it.FileType, &f.FileType) != nil || checkStreamsString("ftype", f.FileType, MaxIndexField) != nil {
		return StreamsFile{}, false
	}
	if json.Unmarshal(it.SHA256, &f.SHA256) != nil || !isSHA256Hex(f.SHA256) {
		return StreamsFile{}, false
	}
	n, err := strconv.ParseInt(string(it.Size), 10, 64)
	if err != nil || n < 0 || n > MaxItemSize {
		return StreamsFile{}, false
	}
	f.Size = n
	if json.Unmarshal(it.Path, &f.Path) != nil || f.Path == "" ||
		checkStreamsString("path", f.Path, MaxIndexPath) != nil || checkImagePath(f.Path) != nil {
		return StreamsFile{}, false
	}
	return f, true
}
