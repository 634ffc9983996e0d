package compat

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

var streamVars = Vars{Name: "c1", Path: "/var/lib/lxc", Rootfs: "/var/lib/lxc/c1/rootfs", TemplateConfig: "LXC_NAME", HookDir: ""}

// chunked hands out r's bytes n at a time, so words fall across reads.
type chunked struct {
	r io.Reader
	n int
}

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

// TestSubstituteStream: the stream gives what Substitute gives, whatever
// the reads cut, including words across the 64 KiB buffer's edge.
func TestSubstituteStream(t *testing.T) {
	edge := strings.Repeat("x", substituteBuffer-5)
	for _, in := range []string{
		"", "LXC_NAME", "LXC_", "LXC_NAM", "xLXC_NAMEx", "LXC_LXC_NAME", "LXC_NAMELXC_PATH",
		"LXC_TEMPLATE_CONFIG/LXC_HOOK_DIR/LXC_ROOTFS", "LXC_ROOT", "LLXC_PATH", "LXC_TEMPLATE_CONFI",
		edge + "LXC_TEMPLATE_CONFIG", edge + "LXC_NAME", edge + "LXC_NA", edge + "xxLXC_", edge + "LXC_PATH" + edge + "LXC_NAME",
		strings.Repeat("LXC_NAME ", 30000),
	} {
		want := streamVars.Substitute([]byte(in))
		for _, n := range []int{1, 3, 7, 4096, 1 << 20} {
			var out bytes.Buffer
			if err := streamVars.SubstituteStream(&out, chunked{strings.NewReader(in), n}); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("%.40q in reads of %d: %.60q, want %.60q", in, n, out.Bytes(), want)
			}
		}
	}
}

func TestSubstituteStreamErrors(t *testing.T) {
	boom := errors.New("boom")
	if err := streamVars.SubstituteStream(io.Discard, iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("read error: %v", err)
	}
	if err := streamVars.SubstituteStream(failWriter{}, strings.NewReader(strings.Repeat("LXC_NAME", 100000))); !errors.Is(err, errWrite) {
		t.Errorf("write error: %v", err)
	}
}

func FuzzSubstituteStream(f *testing.F) {
	for _, s := range []string{"LXC_NAME", "aLXC_PATHb", "LXC_LXC_TEMPLATE_CONFIG", "LXC_HOOK_DI"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, n uint8) {
		want := streamVars.Substitute(in)
		var out bytes.Buffer
		if err := streamVars.SubstituteStream(&out, chunked{bytes.NewReader(in), int(n) + 1}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("%q: stream %q, whole %q", in, out.Bytes(), want)
		}
	})
}
