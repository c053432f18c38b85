package probes

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Sentinel errors name what a failed span's error is in terms a user can
// act on. The kernel reads one level of a returned error: its concrete type
// (from the itab) and, for the standard types, its message. A wrapped error
// is then only "*fmt.wrapError"; but Go code wraps its package-level
// sentinel errors ("%w: detail", "doing x: %w"), so the message still holds
// the sentinel's own text. At attach the sentinels' messages are read from
// the traced process's memory (they are set at init), and a failed error is
// named by the sentinel its message contains at the start or the end.

// Sentinel is a package-level error variable of the traced program and its
// message.
type Sentinel struct {
	// Name is the package name and variable, as %T would name a type:
	// "router.ErrUpstreamTimeout".
	Name    string
	Message string
}

// Bounds on what is read from the target: sentinel variables per binary and
// bytes per message.
const (
	maxSentinels       = 1024
	maxSentinelMessage = 256
)

// sentinelSymbol matches the exported and unexported error variables of Go
// convention (ErrX, errX) in any package.
var sentinelSymbol = regexp.MustCompile(`\.[Ee]rr[A-Z0-9_][A-Za-z0-9_]*$`)

// fixedSentinels are standard sentinels whose message no memory read gives
// (their types have no message field) or whose name breaks the convention.
var fixedSentinels = map[string]string{
	"context.DeadlineExceeded": "context deadline exceeded",
	"context.Canceled":         "context canceled",
	"io.EOF":                   "EOF",
}

// errVar is an error variable's symbol: its name and address.
type errVar struct {
	name string
	addr uint64
}

// isErrVar tells whether an object symbol of size bytes looks like an error
// variable: an interface value (two words) named like one.
func isErrVar(name string, size uint64) bool {
	if size != 16 {
		return false
	}
	if _, ok := fixedSentinels[name]; ok {
		return true
	}
	return sentinelSymbol.MatchString(name) && !strings.Contains(name, "..") && !strings.HasPrefix(name, "go:")
}

// ReadSentinels reads the messages of the binary's error variables from
// mem, the memory of a process running it (/proc/PID/mem). Variables that
// are nil, of another type than *errors.errorString (the fixed standard
// ones excepted) or unreadable are left out. Go executables are not
// position independent by default, so symbol addresses are run-time
// addresses; for a PIE binary the reads find nothing useful and no
// sentinel is returned.
func (b *Binary) ReadSentinels(mem io.ReaderAt) []Sentinel {
	var out []Sentinel
	var word [16]byte
	for _, v := range b.errVars {
		if _, err := mem.ReadAt(word[:], int64(v.addr)); err != nil {
			continue
		}
		itab := binary.LittleEndian.Uint64(word[:8])
		data := binary.LittleEndian.Uint64(word[8:])
		if itab == 0 {
			continue
		}
		name := shortVarName(v.name)
		if msg, ok := fixedSentinels[v.name]; ok {
			out = append(out, Sentinel{Name: name, Message: msg})
			continue
		}
		if typ, _ := b.ItabType(itab); typ != "*errors.errorString" {
			continue
		}
		// errorString is struct{ s string }: a pointer and a length.
		if _, err := mem.ReadAt(word[:], int64(data)); err != nil {
			continue
		}
		ptr := binary.LittleEndian.Uint64(word[:8])
		n := binary.LittleEndian.Uint64(word[8:])
		if n == 0 || n > maxSentinelMessage {
			continue
		}
		msg := make([]byte, n)
		if _, err := mem.ReadAt(msg, int64(ptr)); err != nil || !utf8.Valid(msg) {
			continue
		}
		out = append(out, Sentinel{Name: name, Message: string(msg)})
	}
	return out
}

// ReadProcessSentinels reads the sentinels of the process pid, which runs
// b, through /proc/PID/mem (which needs ptrace access: CAP_SYS_PTRACE for
// another user's process).
func (b *Binary) ReadProcessSentinels(pid int) ([]Sentinel, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return nil, fmt.Errorf("read error variables of pid %d: %w", pid, err)
	}
	defer f.Close()
	return b.ReadSentinels(f), nil
}

// shortVarName drops the import path before the package name:
// "github.com/a/b/router.ErrX" becomes "router.ErrX".
func shortVarName(s string) string {
	s = unescapeSymbol(s)
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// MatchSentinel names the sentinel an error message was built around: the
// message is the sentinel's, or starts with it followed by ':' or ' '
// ("%w: detail", "%w while ..."), or ends with ": " and it ("doing x: %w").
// The longest such message wins (the most specific); "" when none fits.
func MatchSentinel(sentinels []Sentinel, msg string) string {
	best, bestLen := "", 0
	for _, s := range sentinels {
		m := s.Message
		if len(m) <= bestLen || len(m) > len(msg) {
			continue
		}
		if msg == m || strings.HasSuffix(msg, ": "+m) ||
			(strings.HasPrefix(msg, m) && (msg[len(m)] == ':' || msg[len(m)] == ' ')) {
			best, bestLen = s.Name, len(m)
		}
	}
	return best
}
