package cache

import "strings"

// matchExclude reports whether the entry path name (cleaned, without a
// leading "./") is excluded by pattern (normalized the same way), with the
// semantics of GNU tar's --anchored --exclude: shell wildcards in which "*"
// and "?" match "/" too, and a pattern matching a leading directory of name
// excluding name as well. The pattern "." excludes everything.
func matchExclude(pattern, name string) bool {
	if pattern == "." {
		return true
	}
	if fnmatch(pattern, name) {
		return true
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' && fnmatch(pattern, name[:i]) {
			return true
		}
	}
	return false
}

// fnmatch is fnmatch(3) without flags: "*" matches any run of bytes and "?"
// any one byte, "/" and leading dots included; "[...]" is a bracket
// expression (with "!" or "^" negation, ranges and [:class:]); "\" quotes
// the next byte. A "[" that does not start a valid bracket expression
// matches itself.
func fnmatch(pattern, name string) bool {
	px, nx := 0, 0
	starPx, starNx := -1, -1
	for px < len(pattern) || nx < len(name) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				// Try matching nothing first; on a later mismatch come
				// back here and let the star take one byte more.
				starPx, starNx = px, nx+1
				px++
				continue
			case '?':
				if nx < len(name) {
					px++
					nx++
					continue
				}
			case '[':
				if nx < len(name) {
					matched, width, ok := matchBracket(pattern[px:], name[nx])
					if !ok {
						if name[nx] == '[' {
							px++
							nx++
							continue
						}
					} else if matched {
						px += width
						nx++
						continue
					}
				}
			case '\\':
				lit := byte('\\')
				width := 1
				if px+1 < len(pattern) {
					lit, width = pattern[px+1], 2
				}
				if nx < len(name) && name[nx] == lit {
					px += width
					nx++
					continue
				}
			default:
				if nx < len(name) && name[nx] == c {
					px++
					nx++
					continue
				}
			}
		}
		if starNx > 0 && starNx <= len(name) {
			px, nx = starPx, starNx
			continue
		}
		return false
	}
	return true
}

// matchBracket matches byte c against the bracket expression at the start
// of p. It returns whether c matches, the expression's width, and false in
// ok when p does not start a complete bracket expression.
func matchBracket(p string, c byte) (matched bool, width int, ok bool) {
	i := 1
	negate := false
	if i < len(p) && (p[i] == '!' || p[i] == '^') {
		negate = true
		i++
	}
	first := true
	for i < len(p) {
		if p[i] == ']' && !first {
			return matched != negate, i + 1, true
		}
		first = false
		if p[i] == '[' && i+1 < len(p) && p[i+1] == ':' {
			if end := strings.Index(p[i+2:], ":]"); end >= 0 {
				if class := charClass(p[i+2 : i+2+end]); class != nil {
					if class(c) {
						matched = true
					}
					i += 2 + end + 2
					continue
				}
			}
		}
		lo := p[i]
		if lo == '\\' && i+1 < len(p) {
			i++
			lo = p[i]
		}
		i++
		hi := lo
		if i+1 < len(p) && p[i] == '-' && p[i+1] != ']' {
			hi = p[i+1]
			if hi == '\\' && i+2 < len(p) {
				i++
				hi = p[i+1]
			}
			i += 2
		}
		if lo <= c && c <= hi {
			matched = true
		}
	}
	return false, 0, false
}

// charClass returns the test of a POSIX character class ([:alpha:] and
// the like) by name, or nil for a name it does not know. A switch rather
// than a map: a map literal is built by the package's init, at every start
// of the program, including the many that unpack nothing.
func charClass(name string) func(byte) bool {
	switch name {
	case "alpha":
		return func(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
	case "digit":
		return func(c byte) bool { return '0' <= c && c <= '9' }
	case "alnum":
		return func(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' }
	case "upper":
		return func(c byte) bool { return 'A' <= c && c <= 'Z' }
	case "lower":
		return func(c byte) bool { return 'a' <= c && c <= 'z' }
	case "space":
		return func(c byte) bool { return c == ' ' || '\t' <= c && c <= '\r' }
	case "blank":
		return func(c byte) bool { return c == ' ' || c == '\t' }
	case "punct":
		return func(c byte) bool {
			return '!' <= c && c <= '/' || ':' <= c && c <= '@' || '[' <= c && c <= '`' || '{' <= c && c <= '~'
		}
	case "xdigit":
		return func(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
	case "print":
		return func(c byte) bool { return ' ' <= c && c <= '~' }
	case "graph":
		return func(c byte) bool { return '!' <= c && c <= '~' }
	case "cntrl":
		return func(c byte) bool { return c < ' ' || c == 0x7f }
	}
	return nil
}
