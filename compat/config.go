package compat

import (
	"bytes"
	"io"
	"strings"
)

// RewriteConfig returns the container's new LXC_PATH/config, byte for byte
// what the shell template's sed, echo and cat sequence wrote (SPEC 7.2),
// before the LXC_* words are substituted (see Vars). current is the config
// lxc-create wrote (nil or empty when there is none), distConfig the
// relevant "config" meta file, hasFstab whether the image has an fstab,
// lxcPath and name the container's directory and name.
//
// The lines of current matching the basic regular expression lxc.net.0 are
// the network part, the remaining ones matching lxc. the container part
// (in both, "." is any byte, as in sed under LC_ALL=C: lxc-create's own
// "# Template used to create this container: /usr/share/lxc/templates/..."
// comment is part of the container part too). The lines left stay in
// place, and the result is
//
//	the lines left
//	"\n# Distribution configuration\n" distConfig
//	"\n# Container specific configuration\n" the container part
//	"lxc.mount.fstab = LXC_PATH/fstab\n" (only with an fstab)
//	"lxc.uts.name = NAME\n"
//	"\n# Network configuration\n" the network part
//
// The details follow the shell template exactly. sed's w command creates
// its file before reading any line, so the network header is there even
// when the network part is empty. Each line keeps its own line ending, as
// sed does, so a last line without a newline runs into what is written next:
// a kept line or distConfig is ended by the "\n" meant as a blank line
// (which is then missing), a container line has the fstab or uts.name line
// joined to it, and a network line leaves the file without a final newline.
// CRs are ordinary bytes. The name and path are written literally; dash's
// echo would have interpreted backslash escapes in them.
func RewriteConfig(current, distConfig []byte, hasFstab bool, lxcPath, name string) []byte {
	var kept, network, container []byte
	for rest := current; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		}
		rest = rest[len(line):]
		body := bytes.TrimSuffix(line, []byte("\n"))
		switch {
		case matchesNetwork(body):
			network = append(network, line...)
		case matchesLXC(body):
			container = append(container, line...)
		default:
			kept = append(kept, line...)
		}
	}

	out := make([]byte, 0, len(current)+len(distConfig)+len(lxcPath)+len(name)+160)
	out = append(out, kept...)
	out = append(out, "\n# Distribution configuration\n"...)
	out = append(out, distConfig...)
	out = append(out, "\n# Container specific configuration\n"...)
	out = append(out, container...)
	if hasFstab {
		out = append(out, "lxc.mount.fstab = "...)
		out = append(out, lxcPath...)
		out = append(out, "/fstab\n"...)
	}
	out = append(out, "lxc.uts.name = "...)
	out = append(out, name...)
	out = append(out, '\n')
	out = append(out, "\n# Network configuration\n"...)
	out = append(out, network...)
	return out
}

// matchesNetwork reports whether line matches the BRE lxc.net.0 ("." any
// byte).
func matchesNetwork(line []byte) bool {
	for i := 0; i+9 <= len(line); i++ {
		if line[i] == 'l' && line[i+1] == 'x' && line[i+2] == 'c' &&
			line[i+4] == 'n' && line[i+5] == 'e' && line[i+6] == 't' &&
			line[i+8] == '0' {
			return true
		}
	}
	return false
}

// matchesLXC reports whether line matches the BRE lxc. ("." any byte):
// "lxc" with at least one byte after it. The first "lxc" is the one with
// the most bytes after it, so it decides.
func matchesLXC(line []byte) bool {
	i := bytes.Index(line, []byte("lxc"))
	return i >= 0 && i+3 < len(line)
}

// FixMingetty makes mingetty calls in an upstart tty.conf use --nohangup
// (vhangup(2) fails in a user namespace): the first "mingetty" on each line
// becomes "mingetty --nohangup", as sed 's|mingetty|mingetty --nohangup|'
// did. data itself is returned when there is nothing to change.
func FixMingetty(data []byte) []byte {
	const word, fixed = "mingetty", "mingetty --nohangup"
	if !bytes.Contains(data, []byte(word)) {
		return data
	}
	out := make([]byte, 0, len(data)+64)
	for rest := data; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		}
		rest = rest[len(line):]
		if i := bytes.Index(line, []byte(word)); i >= 0 {
			out = append(out, line[:i]...)
			out = append(out, fixed...)
			out = append(out, line[i+len(word):]...)
		} else {
			out = append(out, line...)
		}
	}
	return out
}

// Vars are the values of the words an image's config, fstab and template
// files may use (SPEC 7.4).
type Vars struct {
	Name           string // LXC_NAME: the container's name
	Path           string // LXC_PATH: the container's directory
	Rootfs         string // LXC_ROOTFS: the container's root filesystem
	TemplateConfig string // LXC_TEMPLATE_CONFIG: LXC's shared config directory
	HookDir        string // LXC_HOOK_DIR: LXC's hook directory
}

// Substitute replaces every LXC_NAME, LXC_PATH, LXC_ROOTFS,
// LXC_TEMPLATE_CONFIG and LXC_HOOK_DIR in data with its value.
//
// The values are data, never patterns: a name with #, &, / or \ comes out
// as typed, where the shell template's sed "s#LXC_NAME#...#g" broke or
// mangled it. All words are replaced in one pass over the original text, so
// a value containing one of the words, or text that only becomes a word once
// a value is put in, is not substituted again; the shell template ran one
// sed per word in turn, which would. That is the one deliberate difference:
// for values without those characters and words the result is the same.
// data itself is returned when it has no LXC_ at all.
func (v Vars) Substitute(data []byte) []byte {
	if !bytes.Contains(data, []byte("LXC_")) {
		return data
	}
	r := strings.NewReplacer(v.pairs()...)
	return []byte(r.Replace(string(data)))
}

// pairs are the words and their values, for strings.NewReplacer. All
// words start with "LXC_" and none is a prefix of another, so at most one
// matches at a position (SubstituteStream relies on both).
func (v Vars) pairs() []string {
	return []string{
		"LXC_NAME", v.Name,
		"LXC_PATH", v.Path,
		"LXC_ROOTFS", v.Rootfs,
		"LXC_TEMPLATE_CONFIG", v.TemplateConfig,
		"LXC_HOOK_DIR", v.HookDir,
	}
}

// substituteBuffer is how much SubstituteStream reads, and writes, at a
// time.
const substituteBuffer = 64 << 10

// SubstituteStream is Substitute for a stream: it copies r to w with the
// words replaced, exactly as Substitute would on the whole content, but
// holds only a buffer of 64 KiB each way, plus the start of a word that the
// buffer's end cuts (carried over to the next read), whatever the size of
// the input.
func (v Vars) SubstituteStream(w io.Writer, r io.Reader) error {
	pairs := v.pairs()
	words := make([][]byte, len(pairs))
	longest := 0
	for i, p := range pairs {
		words[i] = []byte(p)
		if i%2 == 0 {
			longest = max(longest, len(p))
		}
	}
	in := make([]byte, substituteBuffer+longest)
	out := make([]byte, 0, 2*substituteBuffer)
	put := func(b []byte) error {
		if len(out)+len(b) > cap(out) {
			if _, err := w.Write(out); err != nil {
				return err
			}
			out = out[:0]
			if len(b) > cap(out) {
				_, err := w.Write(b)
				return err
			}
		}
		out = append(out, b...)
		return nil
	}
	have := 0 // bytes in in: a carried word start, then what was read
	for {
		n, rerr := io.ReadFull(r, in[have:have+substituteBuffer])
		have += n
		eof := rerr == io.EOF || rerr == io.ErrUnexpectedEOF
		if rerr != nil && !eof {
			return rerr
		}
		data := in[:have]
		done := 0 // bytes of data written or replaced
		for pos := 0; ; {
			i := bytes.Index(data[pos:], words[0][:4]) // "LXC_"
			if i < 0 {
				break
			}
			i += pos
			pos = i + 1
			for k := 0; k < len(words); k += 2 {
				if bytes.HasPrefix(data[i:], words[k]) {
					if err := put(data[done:i]); err != nil {
						return err
					}
					if err := put(words[k+1]); err != nil {
						return err
					}
					done = i + len(words[k])
					pos = done
					break
				}
			}
		}
		// A word may start near the end and go on in the next read: the
		// earliest position from which the rest is the start of a word
		// is kept for then.
		keep := have
		if !eof {
			for p := max(done, have-longest+1); p < have; p++ {
				if wordStart(data[p:], words) {
					keep = p
					break
				}
			}
		}
		if err := put(data[done:keep]); err != nil {
			return err
		}
		if eof {
			if len(out) > 0 {
				_, err := w.Write(out)
				return err
			}
			return nil
		}
		have = copy(in, data[keep:])
	}
}

// wordStart reports whether b is a proper prefix of one of the words
// (the even elements of words).
func wordStart(b []byte, words [][]byte) bool {
	for k := 0; k < len(words); k += 2 {
		if len(b) < len(words[k]) && bytes.HasPrefix(words[k], b) {
			return true
		}
	}
	return false
}
