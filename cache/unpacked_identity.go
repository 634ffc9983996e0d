package cache

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// identityName is the file, in an unpacked copy's directory, that records
// what each object was (inode, size, modification and change times) when
// the copy was made. Hashing every object on every clone was most of the
// time of a reflinked create (a reflink itself reads nothing). An object
// whose inode, size and times are those recorded was not written since:
// any write, truncation, chmod, chown or rename of it moves its change
// time, which no one can set back. Only objects that differ are hashed
// on a clone; `cache verify` still hashes them all. The file is a hint:
// missing, unreadable or malformed, every object is hashed.
const identityName = "identity"

// identityHeader is the first line of an identity file.
const identityHeader = "lxc-download unpacked identity 1"

// objectIdentity is what an object's stat said when the copy was made.
type objectIdentity struct {
	ino          uint64
	size         int64
	mtime, ctime int64 // nanoseconds
}

func identityOf(st *unix.Stat_t) objectIdentity {
	return objectIdentity{ino: uint64(st.Ino), size: int64(st.Size), mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
}

// identities are a copy's recorded objects, by name, on device dev.
type identities struct {
	dev     uint64
	objects map[string]objectIdentity
}

// unchanged says whether the object name, of stat st, is as recorded. A
// nil identities knows no object.
func (id *identities) unchanged(name string, st *unix.Stat_t) bool {
	if id == nil || uint64(st.Dev) != id.dev {
		return false
	}
	rec, ok := id.objects[name]
	return ok && rec == identityOf(st)
}

// recordIdentities writes the identity file of the copy directory obj,
// whose objects are names. It returns only once the clock has moved past
// the newest change time recorded: a change in the same clock tick as
// the last one recorded would keep the change time (on filesystems that
// keep it in jiffies), and so pass for unchanged.
func recordIdentities(obj int, names []string) error {
	var dir unix.Stat_t
	if err := unix.Fstat(obj, &dir); err != nil {
		return fmt.Errorf("stat the copy: %w", err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\ndev %d\n", identityHeader, uint64(dir.Dev))
	var newest int64
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(obj, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("stat object %s: %w", name, err)
		}
		id := identityOf(&st)
		fmt.Fprintf(&b, "%s %d %d %d %d\n", name, id.ino, id.size, id.mtime, id.ctime)
		newest = max(newest, id.ctime)
	}
	// Bounded: a clock that does not move within a second is a clock
	// set back, and then only `cache verify` finds a change (see the
	// README's security model).
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		var now unix.Timespec
		if unix.ClockGettime(unix.CLOCK_REALTIME_COARSE, &now) != nil || now.Nano() > newest {
			break
		}
	}
	return writeFileAt(obj, identityName, b.Bytes(), 0o600)
}

// readIdentities reads the identity file of the copy directory dir,
// which must be the running user's and nobody else's; on any failure it
// returns nil, and every object is hashed.
func readIdentities(dir int) *identities {
	f, st, err := openFileAt(dir, identityName)
	if err != nil {
		return nil
	}
	defer f.Close()
	if private(&st) != nil || st.Size > maxManifestSize {
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(f, maxManifestSize))
	if err != nil {
		return nil
	}
	id, err := parseIdentities(data)
	if err != nil {
		return nil
	}
	return id
}

// parseIdentities parses an identity file; any line out of form fails
// it whole.
func parseIdentities(data []byte) (*identities, error) {
	lines := strings.Split(string(data), "\n")
	if len(lines) < 3 || lines[0] != identityHeader || lines[len(lines)-1] != "" {
		return nil, fmt.Errorf("identity: not an identity file")
	}
	dev, ok := strings.CutPrefix(lines[1], "dev ")
	if !ok {
		return nil, fmt.Errorf("identity: no device")
	}
	id := &identities{objects: make(map[string]objectIdentity, len(lines)-3)}
	var err error
	if id.dev, err = strconv.ParseUint(dev, 10, 64); err != nil {
		return nil, fmt.Errorf("identity: device: %w", err)
	}
	for n, l := range lines[2 : len(lines)-1] {
		f := strings.Split(l, " ")
		if len(f) != 5 || len(f[0]) != 64 {
			return nil, fmt.Errorf("identity: line %d: out of form", n+3)
		}
		var o objectIdentity
		var err error
		if o.ino, err = strconv.ParseUint(f[1], 10, 64); err == nil {
			if o.size, err = strconv.ParseInt(f[2], 10, 64); err == nil {
				if o.mtime, err = strconv.ParseInt(f[3], 10, 64); err == nil {
					o.ctime, err = strconv.ParseInt(f[4], 10, 64)
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("identity: line %d: %w", n+3, err)
		}
		id.objects[f[0]] = o
	}
	return id, nil
}
