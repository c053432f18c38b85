package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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
	dropped   atomic.Uint64
	flushes   atomic.Int64
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

func (f *fakeExecs) Flush() error {
	f.flushes.Add(1)
	return nil
}

func (f *fakeExecs) Dropped() uint64 { return f.dropped.Load() }

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
// new matching process is attached by checking that process alone (no
// walk of /proc), and the ticks stop again after its settle window.
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

	walks := metricValue(scrape(t, addr), "routerscope_discovery_scans_total")
	if walks < 1 {
		t.Fatalf("routerscope_discovery_scans_total = %v after the start, want at least 1", walks)
	}

	// A matching process starts: its exec wakes discovery, which checks
	// that process at once and attaches it.
	router := startCopy(t, filepath.Join(dir, "bin", "router"))
	execs.exec(t, router.Process.Pid)
	testenv.Eventually(t, "the new router attached", func() bool { return engine.attachedPIDs()[router.Process.Pid] == 1 })
	after := waitScansStop(t, &scans, cfg)
	if after <= idle {
		t.Errorf("no tick in the settle window after the exec (%d ticks before, %d after)", idle, after)
	}
	if execs.flushes.Load() == 0 {
		t.Error("the ticks did not flush the exec source")
	}
	m := scrape(t, addr)
	if got := metricValue(m, "routerscope_discovery_execs_total"); got != 1 {
		t.Errorf("routerscope_discovery_execs_total = %v, want 1", got)
	}
	if got := metricValue(m, "routerscope_discovery_scans_total"); got != walks {
		t.Errorf("routerscope_discovery_scans_total = %v, want %v: the exec must not walk /proc", got, walks)
	}
	if got := metricValue(m, "routerscope_discovery_checks_total"); got != 1 {
		t.Errorf("routerscope_discovery_checks_total = %v, want 1 (the exec; the ticks after it skip the attached router)", got)
	}
	// The router exits: with nothing attached and nothing wanted the agent
	// is ready, without waiting for a walk of /proc.
	stopProcess(router)
	testenv.Eventually(t, "ready after the router exited", func() bool {
		code, _ := httpGet(t, "http://"+addr+"/readyz")
		return code == http.StatusOK
	})
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

// TestExecWakeDroppedExecsWalk: when the source dropped execs, the next
// tick walks /proc, which finds a matching process no exec announced.
func TestExecWakeDroppedExecsWalk(t *testing.T) {
	rcv := otlptest.StartT(t)
	dir := t.TempDir()
	cfg := execConfig(t, rcv.Endpoint(), dir)
	execs := newFakeExecs()
	var scans scanCount
	engine := &capture{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := runAsync(ctx, cfg, engine.attach, observedDiscard(), execs.option(), scans.option())
	waitScansStop(t, &scans, cfg)

	// Started without its exec reported (the ring was full); another
	// exec wakes discovery and starts the ticks.
	router := startCopy(t, filepath.Join(dir, "bin", "router"))
	execs.dropped.Add(1)
	execs.exec(t, 1)
	testenv.Eventually(t, "the unannounced router attached", func() bool { return engine.attachedPIDs()[router.Process.Pid] == 1 })
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}

// TestExecWakeWaitsForPort: a process selected by a port rule executes,
// then listens later (within its settle window): the checks every interval
// after its exec attach it once it listens, without walking /proc.
func TestExecWakeWaitsForPort(t *testing.T) {
	// The interpreter itself, not a wrapper script (pyenv's shims run it
	// as a child): the process that executes is the one that listens.
	out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Skip("python3 is needed for a process that listens late")
	}
	python := strings.TrimSpace(string(out))
	rcv := otlptest.StartT(t)
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := execConfig(t, rcv.Endpoint(), dir)
	cfg.Agent.Discovery.Settle = 3 * time.Second
	cfg.Agent.Discovery.Rules = []config.Rule{{Name: "late", Selector: config.Selector{Comm: "python3*", Port: port}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	execs := newFakeExecs()
	var scans scanCount
	engine := &capture{}
	lnm := localListener(t)
	addr := lnm.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := runAsync(ctx, cfg, engine.attach, observedDiscard(), execs.option(), scans.option(), WithMetricsListener(lnm))
	waitScansStop(t, &scans, cfg)
	walks := metricValue(scrape(t, addr), "routerscope_discovery_scans_total")

	script := fmt.Sprintf("import socket,time\ntime.sleep(0.5)\ns=socket.socket()\ns.bind(('127.0.0.1',%d))\ns.listen()\ntime.sleep(300)\n", port)
	cmd := exec.Command(python, "-c", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProcess(cmd) })
	execs.exec(t, cmd.Process.Pid)
	testenv.Eventually(t, "the late listener attached", func() bool { return engine.attachedPIDs()[cmd.Process.Pid] == 1 })
	if got := metricValue(scrape(t, addr), "routerscope_discovery_scans_total"); got != walks {
		t.Errorf("routerscope_discovery_scans_total = %v, want %v: the late listener must be found by the checks, not a walk", got, walks)
	}
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
