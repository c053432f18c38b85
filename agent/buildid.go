package agent

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/routerscope/routerscope/probes"
)

// ErrBinaryChanged is returned by ResolveCache.Program when the resolved
// program's build id is not the one the process runs: the file was
// replaced between the two reads, and offsets from it could be wrong for
// the process.
var ErrBinaryChanged = errors.New("the executable changed while it was being resolved; retrying later")

// Note types of the build ids (the Go toolchain's and the GNU linker's).
const (
	noteTypeGoBuildID  = 4
	noteTypeGNUBuildID = 3
)

// BuildID identifies an executable the way probes.Program.BuildID does:
// the Go build id ("go:" + the .note.go.buildid string), else the GNU
// build id ("gnu:" + hex), else a hash of the whole file ("sha256:" + hex).
// Two processes with the same build id run the same code at the same
// offsets.
func BuildID(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read build id of %s: %w", path, err)
	}
	defer f.Close()
	if ef, err := elf.NewFile(f); err == nil {
		if id := noteDesc(ef, ".note.go.buildid", "Go", noteTypeGoBuildID); id != nil {
			return "go:" + string(id), nil
		}
		if id := noteDesc(ef, ".note.gnu.build-id", "GNU", noteTypeGNUBuildID); id != nil {
			return "gnu:" + hex.EncodeToString(id), nil
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("read build id of %s: %w", path, err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// noteDesc returns the descriptor of the first note of the given owner and
// type in a section: 4-byte name size, descriptor size and type, then the
// name and the descriptor, each padded to 4 bytes.
func noteDesc(ef *elf.File, section, owner string, typ uint32) []byte {
	s := ef.Section(section)
	if s == nil {
		return nil
	}
	data, err := s.Data()
	if err != nil {
		return nil
	}
	bo := ef.ByteOrder
	for len(data) >= 12 {
		nameSz, descSz, t := bo.Uint32(data), bo.Uint32(data[4:]), bo.Uint32(data[8:])
		data = data[12:]
		nameEnd, descEnd := align4(nameSz), align4(nameSz)+align4(descSz)
		if uint64(len(data)) < descEnd {
			return nil
		}
		name := bytes.TrimRight(data[:nameSz], "\x00")
		if t == typ && string(name) == owner {
			return append([]byte(nil), data[nameEnd:nameEnd+uint64(descSz)]...)
		}
		data = data[descEnd:]
	}
	return nil
}

func align4(n uint32) uint64 { return (uint64(n) + 3) &^ 3 }

// ResolveCache shares symbol resolutions between processes of the same
// binary: the key is the binary's build id plus the digest of the probe
// files' contents, so many replicas of the router are resolved once, and a
// rebuilt binary (new build id) or an edited probe file is resolved anew,
// never attached with stale offsets. It is safe for concurrent use and
// holds at most max programs, evicting the oldest.
type ResolveCache struct {
	max int

	mu      sync.Mutex
	entries map[string]*probes.Program
	order   []string
}

// NewResolveCache returns a cache of at most max programs.
func NewResolveCache(max int) *ResolveCache {
	if max <= 0 {
		max = 1
	}
	return &ResolveCache{max: max, entries: map[string]*probes.Program{}}
}

// Program returns the cached resolution for the request's binary and probe
// files, or calls resolve and caches its result. A request without a build
// id is never cached. A result whose own BuildID differs from the
// request's is refused with ErrBinaryChanged.
func (c *ResolveCache) Program(req AttachRequest, resolve func() (*probes.Program, error)) (*probes.Program, error) {
	if req.BuildID == "" {
		return resolve()
	}
	key := req.BuildID + "\x00" + req.ProbeDigest
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.entries[key]; ok {
		return p, nil
	}
	// Resolving under the lock: a second replica starting at the same
	// moment waits for the first resolution instead of repeating it.
	p, err := resolve()
	if err != nil {
		return nil, err
	}
	if p.BuildID != "" && bareBuildID(p.BuildID) != bareBuildID(req.BuildID) {
		return nil, fmt.Errorf("%w: process runs %s, file has %s", ErrBinaryChanged, req.BuildID, p.BuildID)
	}
	if len(c.order) >= c.max {
		delete(c.entries, c.order[0])
		c.order = c.order[1:]
	}
	c.entries[key] = p
	c.order = append(c.order, key)
	return p, nil
}

// bareBuildID drops BuildID's kind prefix, so an id the capture engine
// reports without it compares equal.
func bareBuildID(id string) string {
	for _, prefix := range []string{"go:", "gnu:", "sha256:"} {
		if rest, ok := strings.CutPrefix(id, prefix); ok {
			return rest
		}
	}
	return id
}

// Len returns the number of cached programs.
func (c *ResolveCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
