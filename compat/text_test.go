package compat

import "testing"

func TestPrintable(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain text\n\twith tab\n", "plain text\n\twith tab\n"},
		{"évolué ✓\n", "évolué ✓\n"},
		{"red \x1b[31mALERT\x1b[0m", "red [31mALERT[0m"},
		{"title \x1b]0;pwned\x07 done", "title ]0;pwned done"},
		{"cr\rover", "crover"},
		{"c1 \u009b31m csi", "c1 31m csi"},
		{"del\x7f", "del"},
		{"raw \x9b byte", "raw \ufffd byte"},
		{"nul\x00", "nul"},
	} {
		if got := string(Printable([]byte(c.in))); got != c.want {
			t.Errorf("Printable(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestPrintableLine(t *testing.T) {
	got := PrintableLine("bad answer\nERROR: fake\tline\x1b[2K")
	if want := "bad answer ERROR: fake line[2K"; got != want {
		t.Errorf("PrintableLine = %q, want %q", got, want)
	}
}

func TestHasControl(t *testing.T) {
	for s, want := range map[string]bool{
		"c1": false, "my-ct_2.0": false, "ünïcode": false,
		"a\nb": true, "a\tb": true, "a\rb": true, "esc\x1b": true,
		"\u0085": true, "bad\xff": true, "": false,
	} {
		if got := HasControl(s); got != want {
			t.Errorf("HasControl(%q) = %v, want %v", s, got, want)
		}
	}
}
