package main

import (
	"fmt"
	"sync"

	"github.com/routerscope/routerscope/agent"
	"github.com/routerscope/routerscope/probes"
)

// resolveCache shares symbol resolutions between processes of the same
// binary: the key is the binary's build id plus the digest of the probe
// files' contents, so many replicas of the router are resolved once, and a
// rebuilt binary (new build id) or an edited probe file is resolved anew,
// never attached with stale offsets. It is safe for concurrent use and
// holds at most max programs, evicting the oldest.
type resolveCache struct {
	max int

	mu      sync.Mutex
	entries map[string]*probes.Program
	order   []string
}

// newResolveCache returns a cache of at most max programs.
func newResolveCache(max int) *resolveCache {
	if max <= 0 {
		max = 1
	}
	return &resolveCache{max: max, entries: map[string]*probes.Program{}}
}

// Program returns the cached resolution for the request's binary and probe
// files, or calls resolve and caches its result. A request without a build
// id is never cached. A result whose own BuildID differs from the
// request's is refused with agent.ErrBinaryChanged.
func (c *resolveCache) Program(req agent.AttachRequest, resolve func() (*probes.Program, error)) (*probes.Program, error) {
	if req.BuildID == "" {
		return resolve()
	}
	key := req.BuildID + "\x00" + req.ProbeDigest
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.entries[key]; ok {
		return forProcess(p, req), nil
	}
	// Resolving under the lock: a second replica starting at the same
	// moment waits for the first resolution instead of repeating it.
	p, err := resolve()
	if err != nil {
		return nil, err
	}
	if p.BuildID != "" && p.BuildID != req.BuildID {
		return nil, fmt.Errorf("%w: process runs %s, file has %s", agent.ErrBinaryChanged, req.BuildID, p.BuildID)
	}
	if len(c.order) >= c.max {
		delete(c.entries, c.order[0])
		c.order = c.order[1:]
	}
	c.entries[key] = p
	c.order = append(c.order, key)
	return p, nil
}

// forProcess returns a cached program aimed at the request's executable.
// The program's Binary names the file of the process it was resolved for,
// usually through that process's /proc/PID/root, a path that vanishes when
// that process exits; Attach opens Binary again, so a later process of the
// same build id (a restarted router) must use its own path. The offsets,
// the same code's, are shared.
func forProcess(p *probes.Program, req agent.AttachRequest) *probes.Program {
	path := req.Executable
	if path == "" {
		path = req.Target.Binary
	}
	if path == "" || path == p.Binary {
		return p
	}
	cp := *p
	cp.Binary = path
	return &cp
}

// Len returns the number of cached programs.
func (c *resolveCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
