package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/agent/spans"
	"github.com/routerscope/routerscope/agent/spans/spantest"
	"github.com/routerscope/routerscope/internal/otlptest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func observedLogger() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zap.DebugLevel)
	return zap.New(core), logs
}

// runAsync starts Run and returns a function that waits for its result.
func runAsync(ctx context.Context, cfg config.Config, attach Attacher, log *zap.Logger, opts ...Option) func() error {
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, attach, log, opts...) }()
	return func() error { return <-done }
}

// runEnds fails the test unless the Run that wait waits for returns
// without an error within d; what names what should have ended it.
func runEnds(t *testing.T, wait func() error, d time.Duration, what string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(d):
		t.Fatalf("Run still running %v after %s", d, what)
	}
}

func runConfig(endpoint string) config.Config {
	cfg := spantest.OTLPConfig(endpoint)
	cfg.Agent.Targets = []config.Target{{PID: 4242}}
	cfg.Agent.Probes = []string{"router.yaml"}
	cfg.Agent.Export.BatchTimeout = 10 * time.Millisecond
	return cfg
}

func TestRunExportsAndShutsDown(t *testing.T) {
	rcv := otlptest.StartT(t)
	cfg := runConfig(rcv.Endpoint())
	src := newChanSource()
	var req AttachRequest
	attach := func(_ context.Context, r AttachRequest) (EventSource, error) {
		req = r
		return src, nil
	}
	log, logs := observedLogger()
	ctx, cancel := context.WithCancel(context.Background())
	wait := runAsync(ctx, cfg, attach, log, madeUpTarget(t))

	for _, ev := range spantest.Request(4242, 1, time.Now()) {
		src.ch <- ev
	}
	// A request still in flight when the agent stops.
	open := spantest.Request(4242, 2, time.Now())
	src.ch <- open[0]

	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	if _, err := rcv.WaitForSpans(wctx, 2); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if req.Target.PID != 4242 || req.SampleRatio != 1 || len(req.Probes) != 1 {
		t.Errorf("attach request %+v", req)
	}
	if src.closes.Load() == 0 {
		t.Error("source not closed (detached) at shutdown")
	}
	got := rcv.Spans()
	if len(got) != 3 {
		t.Fatalf("received %d spans, want 3 (2 finished + 1 ended at stop)", len(got))
	}
	var stopped int
	for _, s := range got {
		if s.Status.GetMessage() == spans.ReasonAgentStopped {
			stopped++
		}
	}
	if stopped != 1 {
		t.Errorf("%d spans ended as stopped, want 1: %v", stopped, got)
	}
	if logs.FilterMessage("attached").Len() != 1 || logs.FilterMessage("stopped").Len() != 1 {
		t.Errorf("logs: %v", logs.All())
	}
}

func TestRunEndsSpansOfExitedProcess(t *testing.T) {
	var out bytes.Buffer
	cfg := config.DefaultConfig()
	cfg.Agent.Targets = []config.Target{{PID: 77}}
	cfg.Agent.Probes = []string{"p.yaml"}
	src := newChanSource()
	var exited atomic.Bool
	log, logs := observedLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := runAsync(ctx, cfg, func(context.Context, AttachRequest) (EventSource, error) { return src, nil }, log,
		WithStdout(&out), withSweepInterval(5*time.Millisecond),
		withAlive(func(pid uint32) bool { return !(pid == 77 && exited.Load()) }))
	evs := spantest.Request(77, 1, time.Now())
	src.ch <- evs[0]
	src.ch <- evs[1]
	exited.Store(true)
	// The target's exit also ends its source, as the capture engine does.
	deadline := time.After(20 * time.Second)
	for logs.FilterMessage("process exited: ended its open spans as failed").Len() == 0 {
		select {
		case <-deadline:
			t.Fatal("open spans of the exited process were not ended")
		case <-time.After(5 * time.Millisecond):
		}
	}
	src.Close()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if c := strings.Count(out.String(), spans.ReasonProcessExited); c != 2 {
		t.Fatalf("%d spans ended as process exited, want 2:\n%s", c, out.String())
	}
}

func TestRunAttachesNothingWhenDisabled(t *testing.T) {
	for _, mod := range []func(*config.Config){
		func(c *config.Config) { c.Tracing.Enabled = false },
		func(c *config.Config) { c.Tracing.Sampling.Type = config.SamplingAlwaysOff },
	} {
		cfg := config.DefaultConfig()
		cfg.Agent.Targets = []config.Target{{PID: 1}}
		cfg.Agent.Probes = []string{"p.yaml"}
		mod(&cfg)
		called := false
		log, logs := observedLogger()
		err := Run(context.Background(), cfg, func(context.Context, AttachRequest) (EventSource, error) {
			called = true
			return newChanSource(), nil
		}, log)
		if err != nil || called {
			t.Fatalf("err %v attached %v", err, called)
		}
		entries := logs.FilterMessage("attaching nothing").All()
		if len(entries) != 1 || entries[0].ContextMap()[LogKeyReason] == "" {
			t.Fatalf("no reason logged: %v", logs.All())
		}
	}
}

func TestRunAttachFailureUndoes(t *testing.T) {
	cfg := config.DefaultConfig()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The second target is this test binary: it expands to this process.
	cfg.Agent.Targets = []config.Target{{PID: 1}, {Binary: self}}
	cfg.Agent.Probes = []string{"p.yaml"}
	first := newChanSource()
	boom := errors.New("no such symbol")
	var mu sync.Mutex
	calls := 0
	err = Run(context.Background(), cfg, func(_ context.Context, r AttachRequest) (EventSource, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if r.Target.Binary != "" {
			return nil, boom
		}
		return first, nil
	}, zap.NewNop(), WithStdout(&bytes.Buffer{}))
	want := fmt.Sprintf("attach to pid %d (%s)", os.Getpid(), self)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), want) {
		t.Fatalf("err %v", err)
	}
	if calls != 2 || first.closes.Load() != 1 {
		t.Fatalf("calls %d, first source closed %d times", calls, first.closes.Load())
	}
}

func TestRunNeedsTargetAndProbes(t *testing.T) {
	cfg := config.DefaultConfig()
	if err := Run(context.Background(), cfg, nil, zap.NewNop()); !errors.Is(err, ErrNoTarget) {
		t.Fatalf("no target: %v", err)
	}
	cfg.Agent.Targets = []config.Target{{PID: 1}}
	if err := Run(context.Background(), cfg, nil, zap.NewNop()); !errors.Is(err, ErrNoProbes) {
		t.Fatalf("no probes: %v", err)
	}
}

func TestRunUnreachableCollectorDoesNotBlockReading(t *testing.T) {
	rcv, err := otlptest.Start()
	if err != nil {
		t.Fatal(err)
	}
	endpoint := rcv.Endpoint()
	rcv.Close() // nothing listens there any more
	cfg := runConfig(endpoint)
	cfg.Tracing.Exporter.Timeout = 200 * time.Millisecond
	cfg.Agent.Export.QueueSize, cfg.Agent.Export.MaxBatchSize = 8, 4
	cfg.Agent.Export.ShutdownTimeout = 5 * time.Second
	src := newChanSource()
	log, logs := observedLogger()
	ctx, cancel := context.WithCancel(context.Background())
	wait := runAsync(ctx, cfg, func(context.Context, AttachRequest) (EventSource, error) { return src, nil }, log,
		madeUpTarget(t))
	// Every send completes only if the reader keeps reading while exports
	// fail.
	for i := 0; i < 200; i++ {
		for _, ev := range spantest.Request(4242, byte(i), time.Now()) {
			src.ch <- ev
		}
	}
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	errs := logs.FilterMessage("export spans: the collector rejected or could not be reached; spans dropped").All()
	if len(errs) == 0 {
		t.Fatalf("no export error logged: %v", logs.All())
	}
	if got := errs[0].ContextMap()[LogKeyEndpoint]; got != endpoint {
		t.Errorf("error log names endpoint %v, want %s", got, endpoint)
	}
}

func TestSampleRatio(t *testing.T) {
	cases := []struct {
		tr     config.Tracing
		ratio  float64
		attach bool
	}{
		{config.Tracing{Enabled: true, Sampling: config.Sampling{Type: config.SamplingAlwaysOn}}, 1, true},
		{config.Tracing{Enabled: true, Sampling: config.Sampling{Type: config.SamplingProbabilistic, Rate: 0.1}}, 0.1, true},
		// Rate 0 attaches: incoming sampled traceparents are still traced.
		{config.Tracing{Enabled: true, Sampling: config.Sampling{Type: config.SamplingProbabilistic, Rate: 0}}, 0, true},
		{config.Tracing{Enabled: true, Sampling: config.Sampling{Type: config.SamplingAlwaysOff}}, 0, false},
		{config.Tracing{Enabled: false, Sampling: config.Sampling{Type: config.SamplingAlwaysOn}}, 0, false},
	}
	for _, tc := range cases {
		r, a, why := config.SampleRatio(tc.tr)
		if r != tc.ratio || a != tc.attach || (!a && why == "") {
			t.Errorf("%+v: ratio %v attach %v why %q", tc.tr, r, a, why)
		}
	}
}

var _ EventSource = (*chanSource)(nil)

func TestRunShutdownFlushHasADeadline(t *testing.T) {
	rcv := otlptest.StartT(t)
	rcv.Stall() // the collector accepts connections but never answers
	cfg := runConfig(rcv.Endpoint())
	cfg.Tracing.Exporter.Timeout = time.Minute
	cfg.Agent.Export.BatchTimeout = time.Hour // nothing leaves before shutdown
	cfg.Agent.Export.ShutdownTimeout = 200 * time.Millisecond
	src := newChanSource()
	log, logs := observedLogger()
	ctx, cancel := context.WithCancel(context.Background())
	wait := runAsync(ctx, cfg, func(context.Context, AttachRequest) (EventSource, error) { return src, nil }, log,
		madeUpTarget(t))
	for _, ev := range spantest.Request(4242, 1, time.Now()) {
		src.ch <- ev
	}
	cancel()
	// Run returning at all (rather than waiting on the stalled collector
	// for the minute-long export timeout) is the property under test.
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if logs.FilterMessage("flush spans at shutdown").Len() != 1 {
		t.Fatalf("no flush error logged: %v", logs.All())
	}
	if src.closes.Load() != 1 {
		t.Fatal("source not detached after the flush deadline")
	}
}

func TestRunWarnsOnLostEvents(t *testing.T) {
	var out bytes.Buffer
	cfg := config.DefaultConfig()
	cfg.Agent.Targets = []config.Target{{PID: 77}}
	cfg.Agent.Probes = []string{"p.yaml"}
	src := newChanSource()
	log, logs := observedLogger()
	wait := runAsync(context.Background(), cfg, func(context.Context, AttachRequest) (EventSource, error) { return src, nil }, log,
		WithStdout(&out), withSweepInterval(5*time.Millisecond))
	src.lost.Store(12)
	deadline := time.After(20 * time.Second)
	for logs.FilterMessage("kernel ring buffer dropped events").Len() == 0 {
		select {
		case <-deadline:
			t.Fatal("lost events never reported")
		case <-time.After(5 * time.Millisecond):
		}
	}
	src.Close()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if got := logs.FilterMessage("kernel ring buffer dropped events").All()[0].ContextMap()[LogKeyLost]; got != uint64(12) {
		t.Fatalf("lost count logged %v", got)
	}
}
