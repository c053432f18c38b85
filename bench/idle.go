package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/routerscope/routerscope/agent/config"
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
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(window):
	}
	cpu1, err := threadsCPU(ag.pid())
	if err != nil {
		return nil, err
	}
	sw1, err := switches(ag.pid())
	if err != nil {
		return nil, err
	}
	return &IdleResult{Setup: s.name, Mode: mode, Window: time.Since(t0), CPU: cpu1 - cpu0, Wakeups: sw1 - sw0}, nil
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
	b.WriteString("The same agent finding the router by a discovery rule (the DaemonSet mode), measured after the settle window that follows its start (execs by other programs on the machine wake the first mode):\n\n| mode | CPU per second | wake-ups per second |\n|---|---|---|\n")
	for _, d := range append([]*IdleResult{r}, disc...) {
		fmt.Fprintf(b, "| %s | %.3f ms | %.1f |\n", d.Mode, float64(d.PerSecond().Nanoseconds())/1e6, float64(d.Wakeups)/d.Window.Seconds())
	}
	b.WriteString("\n")
}
