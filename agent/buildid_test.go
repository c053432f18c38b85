package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/routerscope/routerscope/probes"
)

func TestBuildID(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	id, err := BuildID(self)
	if err != nil || !strings.HasPrefix(id, "go:") || len(id) < 10 {
		t.Fatalf("Go binary: %q %v", id, err)
	}
	// A copy is the same build; a changed file is not.
	dir := t.TempDir()
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "copy")
	if err := os.WriteFile(cp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if again, _ := BuildID(cp); again != id {
		t.Fatalf("copy: %q, want %q", again, id)
	}
	if sleep, err := BuildID("/bin/sleep"); err != nil || !strings.HasPrefix(sleep, "gnu:") {
		// Debian's coreutils are linked with a GNU build id.
		t.Errorf("/bin/sleep: %q %v", sleep, err)
	}
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h1, err := BuildID(script)
	if err != nil || !strings.HasPrefix(h1, "sha256:") {
		t.Fatalf("not ELF: %q %v", h1, err)
	}
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if h2, _ := BuildID(script); h2 == h1 {
		t.Fatal("changed file kept its hash")
	}
	if _, err := BuildID(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
}

func TestResolveCache(t *testing.T) {
	c := NewResolveCache(2)
	calls := 0
	resolver := func(id string) func() (*probes.Program, error) {
		return func() (*probes.Program, error) {
			calls++
			return &probes.Program{BuildID: id}, nil
		}
	}
	reqA := AttachRequest{BuildID: "go:a", ProbeDigest: "d1"}
	p1, err := c.Program(reqA, resolver("go:a"))
	if err != nil {
		t.Fatal(err)
	}
	// A second process of the same binary shares the resolution, aimed at
	// its own executable: the first process's /proc/PID/root path is gone
	// once it exits (a restarted router).
	p2, _ := c.Program(AttachRequest{Target: Target{PID: 2}, BuildID: "go:a", ProbeDigest: "d1",
		Executable: "/proc/2/root/bin/router"}, resolver("go:a"))
	if calls != 1 {
		t.Fatalf("same build id resolved %d times", calls)
	}
	if p2.Binary != "/proc/2/root/bin/router" || p1.Binary != "" || p2.BuildID != p1.BuildID {
		t.Fatalf("shared resolution: binary %q (first process's now %q), build id %q, want the second process's path",
			p2.Binary, p1.Binary, p2.BuildID)
	}
	if p3, _ := c.Program(AttachRequest{BuildID: "go:a", ProbeDigest: "d1"}, resolver("go:a")); p3 != p1 {
		t.Fatalf("a request without an executable path got a copy")
	}
	// A rebuilt binary, or edited probe files, are resolved anew.
	p3, _ := c.Program(AttachRequest{BuildID: "go:b", ProbeDigest: "d1"}, resolver("go:b"))
	p4, _ := c.Program(AttachRequest{BuildID: "go:a", ProbeDigest: "d2"}, resolver("go:a"))
	if p3 == p1 || p4 == p1 || calls != 3 {
		t.Fatalf("changed key reused a resolution (calls %d)", calls)
	}
	// Bounded: the oldest entry (go:a, d1) was evicted.
	if c.Len() != 2 {
		t.Fatalf("len %d", c.Len())
	}
	if _, _ = c.Program(reqA, resolver("go:a")); calls != 4 {
		t.Fatalf("evicted entry still served (calls %d)", calls)
	}
	// No build id: never cached.
	for i := 0; i < 2; i++ {
		_, _ = c.Program(AttachRequest{ProbeDigest: "d1"}, resolver(""))
	}
	if calls != 6 {
		t.Fatalf("request without build id cached (calls %d)", calls)
	}
	// The file changed between reading the process's build id and
	// resolving: refused, and not cached.
	_, err = c.Program(AttachRequest{BuildID: "go:c"}, resolver("go:new"))
	if !errors.Is(err, ErrBinaryChanged) {
		t.Fatalf("stale resolution accepted: %v", err)
	}
	_, _ = c.Program(AttachRequest{BuildID: "go:c"}, resolver("go:c"))
	if calls != 8 {
		t.Fatalf("refused resolution was cached (calls %d)", calls)
	}
	boom := errors.New("no symbol")
	if _, err := c.Program(AttachRequest{BuildID: "go:d"}, func() (*probes.Program, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("resolve error: %v", err)
	}
}
