package fetchtest

import (
	"archive/tar"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
)

// SyntheticRootfs is a deterministic rootfs for benchmarks: DefaultRootfs
// plus generated packages, for about `entries` entries in all holding
// about `size` bytes of file content, in the order `tar --sort=name`
// writes them. Like a distribution's tree it has many small files and a
// few large ones (sizes spread log-normally), text (documentation,
// configuration) and binary-like content (libraries, executables) that
// compress together about as well as a real rootfs does with xz, and some
// symlinks, hard links and xattrs. The same arguments give the same files.
func SyntheticRootfs(entries int, size int64, seed uint64) []File {
	rng := rand.New(rand.NewPCG(seed, 0x6c78632d646f776e))
	base := DefaultRootfs()
	n := max(entries-len(base), 0)

	// About one entry in ten is a directory, one in twelve a symlink.
	nDirs := n / 10
	nLinks := n / 12
	nFiles := max(n-nDirs-nLinks, 0)

	areas := []area{
		{"./usr/lib/x86_64-linux-gnu/", false, 0.45},
		{"./usr/bin/", false, 0.15},
		{"./usr/share/doc/", true, 0.15},
		{"./usr/share/man/man1/", true, 0.05},
		{"./usr/share/locale/", true, 0.05},
		{"./usr/share/perl5/", true, 0.10},
		{"./etc/", true, 0.05},
	}
	var dirs []string
	seen := map[string]bool{}
	for _, f := range base {
		seen[f.Name] = true
	}
	for i := 0; i < nDirs; i++ {
		a := areas[i%len(areas)]
		d := fmt.Sprintf("%s%s/", a.dir, word(rng, i))
		if !seen[d] {
			dirs = append(dirs, d)
		}
		seen[d] = true
	}
	files := append([]File(nil), base...)
	for _, a := range areas {
		// Each area's own directory chain.
		p := "./"
		for _, part := range strings.Split(strings.Trim(strings.TrimPrefix(a.dir, "./"), "/"), "/") {
			p += part + "/"
			if !seen[p] {
				seen[p] = true
				files = append(files, File{Name: p, Type: tar.TypeDir, Mode: 0o755})
			}
		}
	}
	for _, d := range dirs {
		files = append(files, File{Name: d, Type: tar.TypeDir, Mode: 0o755})
	}

	// Sizes spread log-normally, scaled to add up to size.
	weights := make([]float64, nFiles)
	var sum float64
	for i := range weights {
		weights[i] = math.Exp(rng.NormFloat64() * 1.8)
		sum += weights[i]
	}
	var regular []string
	for i := 0; i < nFiles; i++ {
		a := pickArea(rng, areas)
		parent := a.dir
		if len(dirs) > 0 && rng.IntN(3) > 0 {
			if d := dirs[rng.IntN(len(dirs))]; strings.HasPrefix(d, a.dir) {
				parent = d
			}
		}
		name := fmt.Sprintf("%s%s-%d", parent, word(rng, rng.IntN(1<<20)), i)
		if !a.text {
			name += ".so"
		}
		fsize := int64(0)
		if sum > 0 {
			fsize = int64(float64(size) * weights[i] / sum)
		}
		mode := int64(0o644)
		if strings.HasPrefix(parent, "./usr/bin/") {
			mode = 0o755
		}
		f := File{Name: name, Type: tar.TypeReg, Mode: mode}
		if a.text {
			f.Body = textBody(rng, fsize)
		} else {
			f.Body = binaryBody(rng, fsize)
		}
		if i%500 == 0 {
			f.Xattrs = map[string]string{"user.checksum": fmt.Sprintf("%016x", rng.Uint64())}
		}
		files = append(files, f)
		regular = append(regular, name)
	}
	for i := 0; i < nLinks && len(regular) > 0; i++ {
		target := regular[rng.IntN(len(regular))]
		dir := target[:strings.LastIndex(target, "/")+1]
		name := fmt.Sprintf("%slink-%d", dir, i)
		if i%20 == 0 {
			files = append(files, File{Name: name, Type: tar.TypeLink, Linkname: target})
		} else {
			files = append(files, File{Name: name, Type: tar.TypeSymlink, Mode: 0o777, Linkname: target[len(dir):]})
		}
	}
	sortTarOrder(files)
	// Hard links must come after their targets; sortTarOrder keeps parents
	// first, and a link sorting before its target is moved after it.
	return fixHardLinks(files)
}

// area is a part of the generated tree, holding text or binaries, and
// weight its share of the files.
type area struct {
	dir    string
	text   bool
	weight float64
}

func pickArea(rng *rand.Rand, areas []area) area {
	x := rng.Float64()
	for _, a := range areas {
		if x < a.weight {
			return a
		}
		x -= a.weight
	}
	return areas[0]
}

// sortTarOrder sorts entries the way `tar --sort=name` walks a tree:
// component by component, each directory before what it holds.
func sortTarOrder(files []File) {
	key := func(f File) []string {
		return strings.Split(strings.Trim(strings.TrimPrefix(f.Name, "."), "/"), "/")
	}
	sort.SliceStable(files, func(i, j int) bool {
		a, b := key(files[i]), key(files[j])
		if files[i].Name == "./" {
			return files[j].Name != "./"
		}
		if files[j].Name == "./" {
			return false
		}
		for k := 0; k < len(a) && k < len(b); k++ {
			if a[k] != b[k] {
				return a[k] < b[k]
			}
		}
		return len(a) < len(b)
	})
}

func fixHardLinks(files []File) []File {
	pos := map[string]int{}
	for i, f := range files {
		pos[f.Name] = i
	}
	var out, late []File
	for i, f := range files {
		if f.Type == tar.TypeLink && pos[f.Linkname] > i {
			late = append(late, f)
			continue
		}
		out = append(out, f)
	}
	return append(out, late...)
}

var syllables = []string{"ba", "ker", "lib", "sys", "tem", "on", "ix", "net", "gnu", "ut", "il", "conf",
	"ssl", "cr", "ypt", "py", "thon", "perl", "dev", "x", "core", "fs", "io", "mod", "krb", "ldap", "z", "st"}

// word is a made-up package-like name for i.
func word(rng *rand.Rand, i int) string {
	var b strings.Builder
	for n := 2 + i%3; n > 0; n-- {
		b.WriteString(syllables[rng.IntN(len(syllables))])
	}
	return b.String()
}

var vocabulary = func() []string {
	rng := rand.New(rand.NewPCG(1, 2))
	v := make([]string, 4096)
	for i := range v {
		v[i] = word(rng, i)
	}
	return v
}()

// textBody is n bytes of word salad over a fixed vocabulary, which xz
// packs about as well as documentation.
func textBody(rng *rand.Rand, n int64) string {
	var b strings.Builder
	b.Grow(int(n) + 16)
	col := 0
	for int64(b.Len()) < n {
		w := vocabulary[int(math.Abs(rng.NormFloat64())*300)%len(vocabulary)]
		b.WriteString(w)
		col += len(w) + 1
		if col > 72 {
			b.WriteByte('\n')
			col = 0
		} else {
			b.WriteByte(' ')
		}
	}
	return b.String()[:n]
}

// opcodes stand for the recurring instruction sequences of machine code.
var opcodes = func() [][]byte {
	rng := rand.New(rand.NewPCG(3, 4))
	ops := make([][]byte, 256)
	for i := range ops {
		op := make([]byte, 2+rng.IntN(6))
		for j := range op {
			op[j] = byte(rng.IntN(256))
		}
		ops[i] = op
	}
	return ops
}()

// binaryBody is n bytes shaped like a compiled binary: recurring
// sequences, runs of zeros, and random operands.
func binaryBody(rng *rand.Rand, n int64) string {
	b := make([]byte, 0, n+16)
	for int64(len(b)) < n {
		switch r := rng.IntN(16); {
		case r < 11:
			b = append(b, opcodes[int(math.Abs(rng.NormFloat64())*30)%len(opcodes)]...)
		case r < 13:
			b = append(b, make([]byte, 4+rng.IntN(28))...)
		default:
			v := rng.Uint64()
			b = append(b, byte(v), byte(v>>8))
		}
	}
	return string(b[:n])
}
