package fetch_test

import (
	"strings"
	"testing"

	"github.com/lxc/lxc-download/fetch"
)

// TestProgressPlain: off a terminal, a few whole lines per download and no
// control characters, so lxc-create's log stays readable.
func TestProgressPlain(t *testing.T) {
	r := newRig(t)
	r.bigRootfs()
	r.srv.SetRateLimit(4 << 20)
	out := &lockedBuffer{}
	img, err := r.fetch(r.client(func(o *fetch.Options) { o.Progress = out }))
	if err != nil {
		t.Fatal(err)
	}
	r.checkFetched(img)
	text := out.String()
	for _, c := range text {
		if c < 0x20 && c != '\n' || c == 0x7f {
			t.Fatalf("control character %q in %q", c, text)
		}
	}
	var rootfs []string
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if strings.HasPrefix(l, "rootfs.tar.xz: ") {
			rootfs = append(rootfs, l)
		}
	}
	want := []string{"rootfs.tar.xz: 1.0 MiB to download", "rootfs.tar.xz: 25% of 1.0 MiB, ", "rootfs.tar.xz: 50% of 1.0 MiB, ",
		"rootfs.tar.xz: 75% of 1.0 MiB, ", "rootfs.tar.xz: 1.0 MiB in "}
	if len(rootfs) != len(want) {
		t.Fatalf("rootfs lines:\n%s", text)
	}
	for i, w := range want {
		if !strings.HasPrefix(rootfs[i], w) {
			t.Errorf("line %q, want it to start with %q", rootfs[i], w)
		}
	}
	// A file under a MiB arrives at once: a log gains nothing from it.
	if n := strings.Count(text, "meta.tar.xz: "); n != 0 {
		t.Errorf("%d lines for the meta tarball:\n%s", n, text)
	}
}

func TestProgressPlainResumed(t *testing.T) {
	r := newRig(t)
	r.bigRootfs()
	r.srv.DropAfter(r.path("rootfs.tar.xz"), 524288, 1)
	r.fetch(r.client(func(o *fetch.Options) { o.Attempts = 1 }))
	out := &lockedBuffer{}
	if _, err := r.fetch(r.client(func(o *fetch.Options) { o.Progress = out })); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "rootfs.tar.xz: resuming at 512.0 KiB of 1.0 MiB\n") {
		t.Errorf("progress:\n%s", out)
	}
}

// TestProgressTerminal: on a terminal, a bar per download with its size.
func TestProgressTerminal(t *testing.T) {
	r := newRig(t)
	r.bigRootfs()
	out := &lockedBuffer{}
	if _, err := r.fetch(r.client(func(o *fetch.Options) { o.Progress, o.ProgressTerminal = out, true })); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{"\r", "rootfs.tar.xz", "meta.tar.xz", "100%", "1.0 MiB"} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in %q", want, text)
		}
	}
	// The bars are drawn one after the other, each ending its line.
	if n := strings.Count(text, "\n"); n != 2 {
		t.Errorf("%d lines in %q", n, text)
	}
}

// TestProgressNone: no Progress writer, no output, and nothing breaks.
func TestProgressNone(t *testing.T) {
	r := newRig(t)
	if _, err := r.fetch(r.client()); err != nil {
		t.Fatal(err)
	}
}
