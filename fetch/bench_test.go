package fetch_test

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// BenchmarkFetchImage measures a verified download from the loopback test
// server: HTTPS, the writes to disk, SHA256 and the signature check, all
// in one pass; and the same from a file:// mirror tree on disk.
func BenchmarkFetchImage(b *testing.B) {
	for _, tc := range []struct {
		name     string
		validate bool
		tree     bool // from a file:// mirror tree, not the web server
	}{{"validate", true, false}, {"no-validate", false, false}, {"file-tree", true, true}} {
		validate := tc.validate
		b.Run(tc.name, func(b *testing.B) {
			img := fetchtest.DefaultImage()
			srv, err := fetchtest.NewServer(img)
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			data := make([]byte, 16<<20)
			rand.Read(data)
			dir := fetchtest.ImageDir(img)
			srv.SetSigned(dir+"rootfs.tar.xz", data)
			kr, err := fetch.ReadKeyring(srv.KeyFile)
			if err != nil {
				b.Fatal(err)
			}
			pool, err := fetchtest.CertPool()
			if err != nil {
				b.Fatal(err)
			}
			server := srv.Host
			if tc.tree {
				tree := b.TempDir()
				if err := srv.WriteTree(tree); err != nil {
					b.Fatal(err)
				}
				server = "file://" + tree
			}
			c, err := fetch.New(fetch.Options{Server: server, Validate: validate, Keyring: kr, RootCAs: pool})
			if err != nil {
				b.Fatal(err)
			}
			e := compat.Entry{Path: dir}
			out := b.TempDir()
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.FetchImage(context.Background(), e, out); err != nil {
					b.Fatal(err)
				}
				os.Remove(filepath.Join(out, "rootfs.tar.xz"))
				os.Remove(filepath.Join(out, "meta.tar.xz"))
			}
		})
	}
}
