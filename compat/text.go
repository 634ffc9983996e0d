package compat

import (
	"strings"
	"unicode/utf8"
)

// Printable returns text from the server (a create-message, an error that
// quotes an answer) as it may reach a terminal: C0 control characters other
// than newline and tab, DEL and C1 control characters are dropped, and bytes
// that are not UTF-8 become U+FFFD. Escape sequences could otherwise move
// the cursor, retitle the window, rewrite what was printed before or, on
// some terminals, answer back with input of their own.
func Printable(text []byte) []byte {
	clean := true
	for i := 0; i < len(text); {
		r, n := utf8.DecodeRune(text[i:])
		if !printableRune(r, n, true) {
			clean = false
			break
		}
		i += n
	}
	if clean {
		return text
	}
	out := make([]byte, 0, len(text))
	for i := 0; i < len(text); {
		r, n := utf8.DecodeRune(text[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			out = utf8.AppendRune(out, utf8.RuneError)
		case printableRune(r, n, true):
			out = append(out, text[i:i+n]...)
		}
		i += n
	}
	return out
}

// PrintableLine is Printable for one line, such as an ERROR line: newlines
// and tabs become spaces too, so that what follows cannot pass for a line
// of its own.
func PrintableLine(s string) string {
	s = string(Printable([]byte(s)))
	if strings.ContainsAny(s, "\n\t") {
		s = strings.Map(func(r rune) rune {
			if r == '\n' || r == '\t' {
				return ' '
			}
			return r
		}, s)
	}
	return s
}

// HasControl reports whether s holds a C0 or C1 control character or DEL,
// or is not UTF-8: a value that ends up in a line of a file (a container
// name in its config) must have none.
func HasControl(s string) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if !printableRune(r, n, false) {
			return true
		}
		i += n
	}
	return false
}

// printableRune reports whether the rune r, n bytes long, may pass;
// keepSpace lets newline and tab through.
func printableRune(r rune, n int, keepSpace bool) bool {
	switch {
	case r == utf8.RuneError && n == 1:
		return false
	case r == '\n' || r == '\t':
		return keepSpace
	case r < 0x20 || (r >= 0x7f && r <= 0x9f):
		return false
	}
	return true
}
