package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/cilium/ebpf/rlimit"

	"github.com/routerscope/routerscope/agent"
	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/probes"
)

// resolveCacheSize bounds the resolutions kept: one per distinct binary and
// probe set, so a node running many replicas of a few routers needs few.
const resolveCacheSize = 16

// engine is the capture engine behind the agent's Attacher: one
// probes.Capture for every traced process, loaded at the first attach (so
// a run that attaches nothing loads nothing) and closed when the agent
// has stopped.
type engine struct {
	opts  probes.CaptureOptions
	cache *resolveCache

	mu sync.Mutex
	c  *probes.Capture
}

// captureEngine is what the agent's run needs from the capture engine.
type captureEngine struct {
	attach agent.Attacher
	// stats reads the kernel's counters for /metrics; nil means none.
	stats agent.KernelStats
	// close frees the kernel objects once the agent has stopped.
	close func() error
}

// newAttacher returns the capture engine: for each process it resolves the
// probe files against the process's executable (shared between processes
// of the same build id) and attaches the kernel programs, filtered to the
// process's PID, to the agent's one Capture, sized by k.
func newAttacher(k config.Kernel) (captureEngine, error) {
	opts := k.CaptureOptions()
	if err := opts.Check(); err != nil {
		return captureEngine{}, err
	}
	e := &engine{opts: opts, cache: newResolveCache(resolveCacheSize)}
	return captureEngine{attach: e.attach, stats: e.stats, close: e.close}, nil
}

// stats reads the Capture's counters, once it is loaded.
func (e *engine) stats() (probes.CaptureStats, bool) {
	e.mu.Lock()
	c := e.c
	e.mu.Unlock()
	if c == nil {
		return probes.CaptureStats{}, false
	}
	return c.Stats(), true
}

// attach resolves and attaches one process. A done ctx (the agent stopping)
// ends it between steps, before it loads or attaches anything more.
func (e *engine) attach(ctx context.Context, req agent.AttachRequest) (agent.EventSource, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("attach pid %d: %w", req.Target.PID, err)
	}
	prog, err := e.cache.Program(req, func() (*probes.Program, error) { return resolve(req) })
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("attach pid %d: %w", req.Target.PID, err)
	}
	c, err := e.capture()
	if err != nil {
		return nil, err
	}
	opts := probes.DefaultOptions()
	opts.SampleRatio = probes.Ratio(req.SampleRatio)
	opts.Propagation.Extract = req.Propagation.Extract
	opts.Propagation.Inject = req.Propagation.Inject
	return c.Attach(ctx, prog, req.Target.PID, opts)
}

// capture returns the Capture, loading it on first use.
func (e *engine) capture() (*probes.Capture, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.c == nil {
		// Before Linux 5.11 BPF memory is charged to RLIMIT_MEMLOCK, and
		// raising it needs CAP_SYS_RESOURCE: say what to grant. A
		// process-wide change, so main makes it, not package probes.
		if err := rlimit.RemoveMemlock(); err != nil {
			return nil, fmt.Errorf("load the capture object: remove the memlock limit (needs root, or CAP_SYS_RESOURCE besides CAP_BPF and CAP_PERFMON): %w", err)
		}
		c, err := probes.NewCapture(e.opts)
		if err != nil {
			return nil, err
		}
		e.c = c
	}
	return e.c, nil
}

func (e *engine) close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.c == nil {
		return nil
	}
	err := e.c.Close()
	e.c = nil
	return err
}

// resolve loads the request's probe files and resolves them against the
// target's executable.
func resolve(req agent.AttachRequest) (*probes.Program, error) {
	path := req.Executable
	if path == "" {
		path = req.Target.Binary
	}
	if path == "" {
		exe, err := probes.ExePath(req.Target.PID)
		if err != nil {
			return nil, err
		}
		path = exe
	}
	spec, err := loadSpecs(req.Probes)
	if err != nil {
		return nil, err
	}
	bin, err := probes.OpenBinary(path)
	if err != nil {
		return nil, err
	}
	defer bin.Close()
	// Without DWARF (a stripped build) the locations come from the offsets
	// file extracted from the unstripped build, when there is one.
	prog, err := probes.ResolveAny(bin, spec)
	if err != nil {
		return nil, fmt.Errorf("resolve probes against %s: %w", path, err)
	}
	return prog, nil
}

// loadSpecs reads every probe file into one spec, so a parent named in one
// file may be declared in another.
func loadSpecs(files []string) (*probes.Spec, error) {
	spec := &probes.Spec{}
	for _, file := range files {
		s, err := probes.LoadSpec(file)
		if err != nil {
			return nil, err
		}
		spec.Probes = append(spec.Probes, s.Probes...)
		if spec.Path == "" {
			spec.Path = s.Path
		}
		if spec.Offsets == "" {
			spec.Offsets = s.Offsets
		}
	}
	return spec, nil
}

// checkProbeFile is the reload check: a probe file that does not parse is
// refused before the running config is replaced.
func checkProbeFile(path string) error {
	_, err := probes.LoadSpec(path)
	return err
}

// checkResolves is the reload's second check: the new probes resolve
// against a process attached now, or the reload is refused before that
// process is detached.
func checkResolves(req agent.AttachRequest) error {
	_, err := resolve(req)
	return err
}
