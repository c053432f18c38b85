package probes

import (
	"io"
	"os/exec"
	"testing"
	"time"
)

func TestMatchSentinel(t *testing.T) {
	s := []Sentinel{
		{Name: "router.ErrUpstreamTimeout", Message: "upstream timed out"},
		{Name: "router.ErrUpstreamUnavailable", Message: "upstream unavailable"},
		{Name: "router.ErrClientGone", Message: "client closed the request"},
		{Name: "router.ErrNoBackend", Message: "no endpoint serves the model"},
		{Name: "io.EOF", Message: "EOF"},
	}
	for msg, want := range map[string]string{
		"upstream timed out": "router.ErrUpstreamTimeout",
		"upstream timed out: e1 (127.0.0.1:1) gave no complete answer": "router.ErrUpstreamTimeout",
		"upstream unavailable: e1 (127.0.0.1:1): dial tcp: refused":    "router.ErrUpstreamUnavailable",
		"client closed the request while waiting for e1 (127.0.0.1:1)": "router.ErrClientGone",
		`select backend for model "m": no endpoint serves the model`:   "router.ErrNoBackend",
		"read upstream body: unexpected EOF":                           "",
		"read upstream body: EOF":                                      "io.EOF",
		"upstream timed outside":                                       "",
		"something else entirely":                                      "",
		"":                                                             "",
	} {
		if got := MatchSentinel(s, msg); got != want {
			t.Errorf("MatchSentinel(%q) = %q, want %q", msg, got, want)
		}
	}
}

func TestReadProcessSentinels(t *testing.T) {
	// A running fixture (go test strips its own binary's symbols): its
	// sentinels are set at init and read from its memory.
	bin := openFixture(t, variantFull)
	cmd := exec.Command(bin.Path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	// Wait until main runs, so init has set the variables.
	if _, err := io.WriteString(stdin, "greet\n"); err != nil {
		t.Fatal(err)
	}
	var got []Sentinel
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if got, err = bin.ReadProcessSentinels(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		if len(got) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	byName := map[string]string{}
	for _, s := range got {
		byName[s.Name] = s.Message
	}
	for name, msg := range map[string]string{
		"main.errBlocked":     "model blocked",
		"io.ErrUnexpectedEOF": io.ErrUnexpectedEOF.Error(),
		"io.EOF":              "EOF",
	} {
		if byName[name] != msg {
			t.Errorf("sentinel %s = %q, want %q (read %v)", name, byName[name], msg, got)
		}
	}
	if len(got) > maxSentinels {
		t.Errorf("%d sentinels, bound %d", len(got), maxSentinels)
	}
}

// TestReadSentinelsHostileMemory: garbage where the variables should be
// yields no sentinel and no panic.
func TestReadSentinelsHostileMemory(t *testing.T) {
	b := &Binary{itabs: map[uint64]string{0x10: "*errors.errorString"},
		errVars: []errVar{{name: "a.ErrX", addr: 0}, {name: "a.ErrY", addr: 32}}}
	mem := make([]byte, 64)
	// a.ErrX: itab 0x10, data 16 -> string header at 16: ptr 0, len huge.
	mem[0] = 0x10
	mem[8] = 16
	mem[24] = 0xff
	mem[31] = 0x7f
	// a.ErrY: itab 0x10, data 48 -> string at 0 of length 3, invalid UTF-8 there.
	mem[32] = 0x10
	mem[40] = 48
	mem[56] = 3
	mem[0], mem[1], mem[2] = 0x10, 0xff, 0xfe
	if got := b.ReadSentinels(bytesReaderAt(mem)); len(got) != 0 {
		t.Errorf("sentinels from garbage: %v", got)
	}
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
