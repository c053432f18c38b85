package main

import (
	"errors"
	"testing"

	"github.com/routerscope/routerscope/agent"
	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/probes"
)

func TestResolveCache(t *testing.T) {
	c := newResolveCache(2)
	calls := 0
	resolver := func(id string) func() (*probes.Program, error) {
		return func() (*probes.Program, error) {
			calls++
			return &probes.Program{BuildID: id}, nil
		}
	}
	reqA := agent.AttachRequest{BuildID: "go:a", ProbeDigest: "d1"}
	p1, err := c.Program(reqA, resolver("go:a"))
	if err != nil {
		t.Fatal(err)
	}
	// A second process of the same binary shares the resolution, aimed at
	// its own executable: the first process's /proc/PID/root path is gone
	// once it exits (a restarted router).
	p2, _ := c.Program(agent.AttachRequest{Target: config.Target{PID: 2}, BuildID: "go:a", ProbeDigest: "d1",
		Executable: "/proc/2/root/bin/router"}, resolver("go:a"))
	if calls != 1 {
		t.Fatalf("same build id resolved %d times", calls)
	}
	if p2.Binary != "/proc/2/root/bin/router" || p1.Binary != "" || p2.BuildID != p1.BuildID {
		t.Fatalf("shared resolution: binary %q (first process's now %q), build id %q, want the second process's path",
			p2.Binary, p1.Binary, p2.BuildID)
	}
	if p3, _ := c.Program(agent.AttachRequest{BuildID: "go:a", ProbeDigest: "d1"}, resolver("go:a")); p3 != p1 {
		t.Fatalf("a request without an executable path got a copy")
	}
	// A rebuilt binary, or edited probe files, are resolved anew.
	p3, _ := c.Program(agent.AttachRequest{BuildID: "go:b", ProbeDigest: "d1"}, resolver("go:b"))
	p4, _ := c.Program(agent.AttachRequest{BuildID: "go:a", ProbeDigest: "d2"}, resolver("go:a"))
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
		_, _ = c.Program(agent.AttachRequest{ProbeDigest: "d1"}, resolver(""))
	}
	if calls != 6 {
		t.Fatalf("request without build id cached (calls %d)", calls)
	}
	// The file changed between reading the process's build id and
	// resolving: refused, and not cached.
	_, err = c.Program(agent.AttachRequest{BuildID: "go:c"}, resolver("go:new"))
	if !errors.Is(err, agent.ErrBinaryChanged) {
		t.Fatalf("stale resolution accepted: %v", err)
	}
	_, _ = c.Program(agent.AttachRequest{BuildID: "go:c"}, resolver("go:c"))
	if calls != 8 {
		t.Fatalf("refused resolution was cached (calls %d)", calls)
	}
	boom := errors.New("no symbol")
	if _, err := c.Program(agent.AttachRequest{BuildID: "go:d"}, func() (*probes.Program, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("resolve error: %v", err)
	}
}
