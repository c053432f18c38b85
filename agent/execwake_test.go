package agent

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/internal/otlptest"
	"github.com/routerscope/routerscope/internal/testenv"
	"github.com/routerscope/routerscope/probes"
)

// fakeExecs is an ExecSource the test drives: exec reports one exec.
type fakeExecs struct {
	ch        chan uint32
	closeOnce sync.Once
	closed    chan struct{}
}

func newFakeExecs() *fakeExecs {
	return &fakeExecs{ch: make(chan uint32), closed: make(chan struct{})}
}

func (f *fakeExecs) Wait() (uint32, error) {
	select {
	case pid := <-f.ch:
		return pid, nil
	case <-f.closed:
		return 0, probes.ErrClosed
	}
}

func (f *fakeExecs) Close() error {
	f.closeOnce.Do(func() { close(f.closed) })
	return nil
}

func (f *fakeExecs) exec(t *testing.T, pid int) {
	t.Helper()
	select {
	case f.ch <- uint32(pid):
	case <-time.After(10 * time.Second):
		t.Fatal("the agent does not read exec notifications")
	}
}

func (f *fakeExecs) option() Option {
	return WithExecSource(func(time.Duration) (ExecSource, error) { return f, nil })
}

// execConfig is a discovery config with a short settle window and a
// safety rescan too long to happen during a test.
func execConfig(t *testing.T, endpoint, dir string) config.Config {
	t.Helper()
	cfg := discoveryConfig(t, endpoint, dir, filepath.Join(dir, "bin", "rout*"))
	cfg.Agent.Discovery.Settle = 200 * time.Millisecond
	cfg.Agent.Discovery.Rescan = time.Hour
	return cfg
}

// waitScansStop waits until discovery stops scanning (the settle window
// is over) and returns the scan count then.
func waitScansStop(t *testing.T, scans *scanCount, cfg config.Config) int64 {
	t.Helper()
	quiet := cfg.Agent.Discovery.Settle + 5*cfg.Agent.Discovery.Interval
	var n int64 = -1
	testenv.Eventually(t, "discovery to stop scanning after the settle window", func() bool {
		before := scans.n.Load()
		if before == n {
			return true
		}
		n = before
		time.Sleep(quiet)
		return scans.n.Load() == before
	})
	return scans.n.Load()
}

// TestExecWakeIdleDoesNotScan: with exec notifications, an idle agent in
// discovery mode stops scanning once the settle window after its start is
// over, and scans nothing while nothing executes; an exec wakes it, the
// new matching process is attached, and the scans stop again.
func TestExecWakeIdleDoesNotScan(t *testing.T) {
	rcv := otlptest.StartT(t)
	dir := t.TempDir()
	cfg := execConfig(t, rcv.Endpoint(), dir)
	execs := newFakeExecs()
	var scans scanCount
	engine := &capture{}
	ln := localListener(t)
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := runAsync(ctx, cfg, engine.attach, observedDiscard(), execs.option(), scans.option(), WithMetricsListener(ln))

	idle := waitScansStop(t, &scans, cfg)
	if idle == 0 {
		t.Fatal("no scan during the settle window after the start")
	}
	// Idle: a second with no exec is 50 intervals without a scan.
	time.Sleep(time.Second)
	if n := scans.n.Load() - idle; n != 0 {
		t.Fatalf("%d scans while nothing executed, want 0", n)
	}

	// A matching process starts: its exec wakes discovery, which scans at
	// once and attaches it.
	router := startCopy(t, filepath.Join(dir, "bin", "router"))
	execs.exec(t, router.Process.Pid)
	testenv.Eventually(t, "the new router attached", func() bool { return engine.attachedPIDs()[router.Process.Pid] == 1 })
	after := waitScansStop(t, &scans, cfg)
	if after <= idle {
		t.Errorf("no scan after the exec (%d scans before, %d after)", idle, after)
	}
	m := scrape(t, addr)
	if got := metricValue(m, "routerscope_discovery_execs_total"); got != 1 {
		t.Errorf("routerscope_discovery_execs_total = %v, want 1", got)
	}
	if got := metricValue(m, "routerscope_discovery_scans_total"); got != float64(after) {
		t.Errorf("routerscope_discovery_scans_total = %v, want %d (the scans counted)", got, after)
	}
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-execs.closed:
	default:
		t.Error("the exec source was not closed at stop")
	}
}

// TestExecWakeRetriesKeepScanning: a failed attach's retry is due after
// the settle window; discovery keeps scanning every interval until the
// retry attaches, although nothing executes.
func TestExecWakeRetriesKeepScanning(t *testing.T) {
	rcv := otlptest.StartT(t)
	dir := t.TempDir()
	cfg := execConfig(t, rcv.Endpoint(), dir)
	cfg.Agent.Discovery.Settle = 50 * time.Millisecond
	cfg.Agent.Discovery.RetryInterval = 500 * time.Millisecond
	router := startCopy(t, filepath.Join(dir, "bin", "router"))
	var mu sync.Mutex
	failed := 0
	engine := &capture{fail: func(AttachRequest) error {
		mu.Lock()
		defer mu.Unlock()
		if failed == 0 {
			failed++
			return errors.New("first attach fails")
		}
		return nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := runAsync(ctx, cfg, engine.attach, observedDiscard(), newFakeExecs().option())
	testenv.Eventually(t, "the router attached at the retry", func() bool { return engine.attachedPIDs()[router.Process.Pid] == 1 })
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}

// TestExecWakeFallsBackToPolling: when exec notifications cannot be
// opened, the agent says why in one log line and polls every interval.
func TestExecWakeFallsBackToPolling(t *testing.T) {
	rcv := otlptest.StartT(t)
	dir := t.TempDir()
	cfg := execConfig(t, rcv.Endpoint(), dir)
	var scans scanCount
	log, logs := observedLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := WithExecSource(func(time.Duration) (ExecSource, error) { return nil, errors.New("no CAP_PERFMON") })
	wait := runAsync(ctx, cfg, (&capture{}).attach, log, open, scans.option())
	// Well past the settle window, polling goes on.
	time.Sleep(cfg.Agent.Discovery.Settle)
	scans.wait(t, 10)
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	got := logs.FilterMessageSnippet("exec notifications are not available").All()
	if len(got) != 1 {
		t.Fatalf("%d fallback log lines, want 1", len(got))
	}
	if f := got[0].ContextMap(); f[LogKeyDiscoveryMode] != "polling" || f["error"] != "no CAP_PERFMON" {
		t.Errorf("fallback log fields %v", f)
	}
}

// TestExecWakeAttachesNewProcess runs discovery on the kernel's exec
// notifications (probes.ExecWatcher) with no safety rescan during the
// test: a process started after the settle window is attached because
// its exec woke discovery, within the 2 s discovery promises (5 s here:
// the test machine is shared).
func TestExecWakeAttachesNewProcess(t *testing.T) {
	testenv.RequireBPF(t, "attaching the exec raw tracepoint")
	rcv := otlptest.StartT(t)
	dir := t.TempDir()
	cfg := execConfig(t, rcv.Endpoint(), dir)
	cfg.Agent.Discovery.Interval = config.DefaultConfig().Agent.Discovery.Interval
	engine := &capture{}
	ln := localListener(t)
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := WithExecSource(func(gap time.Duration) (ExecSource, error) {
		w, err := probes.NewExecWatcher(gap)
		if err != nil {
			return nil, err
		}
		return w, nil
	})
	wait := runAsync(ctx, cfg, engine.attach, observedDiscard(), open, WithMetricsListener(ln))
	// Past the settle window after the start.
	time.Sleep(cfg.Agent.Discovery.Settle + cfg.Agent.Discovery.Interval)

	start := time.Now()
	router := startCopy(t, filepath.Join(dir, "bin", "router"))
	testenv.Eventually(t, "the new router attached", func() bool { return engine.attachedPIDs()[router.Process.Pid] == 1 })
	took := time.Since(start)
	t.Logf("attached %v after the exec", took)
	if took > 5*time.Second {
		t.Errorf("attached %v after the exec, want within 5 s", took)
	}
	if got := metricValue(scrape(t, addr), "routerscope_discovery_execs_total"); got < 1 {
		t.Errorf("routerscope_discovery_execs_total = %v, want at least 1", got)
	}
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}
