package compat

import (
	"encoding/json"
	"fmt"
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
