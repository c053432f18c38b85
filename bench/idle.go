package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/probes"
)

// IdleResult is an attached agent's CPU while the traced router serves
// nothing: what leaving the agent on costs between requests.
type IdleResult struct {
	Setup string
	// Mode is how the agent found the router: attached by --pid, or by a
	// discovery rule (woken by execs, or polling /proc).
	Mode   string
	Window time.Duration
	// CPU is the agent's CPU time (all threads) over Window.
	CPU time.Duration
	// Wakeups are the agent's context switches over Window (voluntary and
	// not): how often something woke it.
	Wakeups uint64
	// Execs is how many programs the machine executed over Window (what
	// wakes an agent in discovery mode); -1 when it could not be counted.
	Execs int64
}

// countExecs counts the programs executed on the machine until stop is
// called, which returns the count (-1 when the exec watcher cannot load).
func countExecs() (stop func() int64) {
	w, err := probes.NewExecWatcher(0)
	if err != nil {
		return func() int64 { return -1 }
	}
	var n atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := w.Wait(); err != nil {
				return
			}
			n.Add(1)
		}
	}()
	return func() int64 {
		_ = w.Close()
		<-done
		return n.Load()
	}
}

// PerSecond is the idle CPU per second of wall time.
func (r *IdleResult) PerSecond() time.Duration {
	if r.Window <= 0 {
		return 0
	}
	return time.Duration(float64(r.CPU) * float64(time.Second) / float64(r.Window))
}

// Idle modes: how the idle agent finds the router.
const (
	idlePID       = "--pid"
	idleExecWoken = "discovery, woken by execs"
	idlePolling   = "discovery, polling /proc"
)

// measureIdleModes measures the idle agent in each mode: attached by pid,
// and in discovery mode (the DaemonSet's) with exec notifications and
// without them (polling every discovery.interval, the fallback).
func measureIdleModes(ctx context.Context, p params, bins binaries, srv *servers, s setup, window time.Duration) (*IdleResult, []*IdleResult, error) {
	pid, err := measureIdle(ctx, p, bins, srv, s, window, idlePID)
	if err != nil {
		return nil, nil, err
	}
	var disc []*IdleResult
	for _, mode := range []string{idleExecWoken, idlePolling} {
		r, err := measureIdle(ctx, p, bins, srv, s, window, mode)
		if err != nil {
			return nil, nil, err
		}
		disc = append(disc, r)
	}
	return pid, disc, nil
}

// measureIdle attaches an agent with setup s to the idle router and reads
// its CPU time over window, after a settling second (attaching, the first
// scans and the Go runtime's start-up are not idle work); in discovery
// mode after the settle window of scans that follows its start too.
func measureIdle(ctx context.Context, p params, bins binaries, srv *servers, s setup, window time.Duration, mode string) (*IdleResult, error) {
	logs := filepath.Join(p.out, "logs")
	cfg, err := writeAgentConfig(logs, srv.agentSink.endpoint(), s.probes, s)
	if err != nil {
		return nil, err
	}
	args := []string{"agent", "--pid", fmt.Sprint(srv.router.pid()), "--config", cfg, "--placement", s.placement}
	settle := time.Second
	if mode != idlePID {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", srv.router.pid()))
		if err != nil {
			return nil, fmt.Errorf("read the router's executable: %w", err)
		}
		args = append(args, "--discover", exe, fmt.Sprintf("--exec-wake=%t", mode == idleExecWoken))
		settle += config.DefaultSettle
	}
	ag, err := start(logs, "agent-idle", bins.self, args...)
	if err != nil {
		return nil, err
	}
	defer ag.stop(30 * time.Second)
	if err := ag.waitLog(ctx, `"msg":"attached"`, 60*time.Second); err != nil {
		return nil, err
	}
	time.Sleep(settle)
	cpu0, err := threadsCPU(ag.pid())
	if err != nil {
		return nil, err
	}
	sw0, err := switches(ag.pid())
	if err != nil {
		return nil, err
	}
	stopCount := countExecs()
	t0 := time.Now()
	select {
	case <-ctx.Done():
		stopCount()
		return nil, ctx.Err()
	case <-time.After(window):
	}
	execs := stopCount()
	cpu1, err := threadsCPU(ag.pid())
	if err != nil {
		return nil, err
	}
	sw1, err := switches(ag.pid())
	if err != nil {
		return nil, err
	}
	return &IdleResult{Setup: s.name, Mode: mode, Window: time.Since(t0), CPU: cpu1 - cpu0, Wakeups: sw1 - sw0, Execs: execs}, nil
}

// switches sums the context switches of the process's threads
// (/proc/PID/task/*/status: voluntary_ctxt_switches and
// nonvoluntary_ctxt_switches).
func switches(pid int) (uint64, error) {
	var sum uint64
	err := eachTaskFile(pid, "status", func(data []byte) error {
		for _, line := range strings.Split(string(data), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok || (k != "voluntary_ctxt_switches" && k != "nonvoluntary_ctxt_switches") {
				continue
			}
			var n uint64
			if _, err := fmt.Sscan(strings.TrimSpace(v), &n); err != nil {
				return fmt.Errorf("parse %s %q: %w", k, v, err)
			}
			sum += n
		}
		return nil
	})
	return sum, err
}

func renderIdle(b *strings.Builder, r *IdleResult, disc []*IdleResult) {
	fmt.Fprintf(b, "## Idle agent\n\nAn agent (%s) attached to the router while it serves nothing, after a settling second: **%.3f ms of CPU per second** (%.1f ms over %v, all threads, schedstat) and %.1f wake-ups per second.\n\n",
		r.Setup, float64(r.PerSecond().Nanoseconds())/1e6, float64(r.CPU.Nanoseconds())/1e6, r.Window.Round(time.Millisecond),
		float64(r.Wakeups)/r.Window.Seconds())
	if len(disc) == 0 {
		return
	}
	b.WriteString("The same agent finding the router by a discovery rule (the DaemonSet mode), measured after the settle window that follows its start. Programs executed on the machine wake the exec-woken mode (each is checked against the rules); the last column counts them:\n\n| mode | CPU per second | wake-ups per second | programs executed on the machine per second |\n|---|---|---|---|\n")
	for _, d := range append([]*IdleResult{r}, disc...) {
		execs := "-"
		if d.Execs >= 0 {
			execs = fmt.Sprintf("%.1f", float64(d.Execs)/d.Window.Seconds())
		}
		fmt.Fprintf(b, "| %s | %.3f ms | %.1f | %s |\n", d.Mode, float64(d.PerSecond().Nanoseconds())/1e6, float64(d.Wakeups)/d.Window.Seconds(), execs)
	}
	b.WriteString("\n")
}
