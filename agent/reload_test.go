package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/agent/spans/spantest"
	"github.com/routerscope/routerscope/internal/otlptest"
	"github.com/routerscope/routerscope/internal/testenv"
)

// writeConfig writes an agent config selecting executable with probeFile.
func writeConfig(t *testing.T, path, endpoint, executable, probeFile, extra string) {
	t.Helper()
	body := fmt.Sprintf(`observability:
  tracing:
    enabled: true
    exporter: {type: otlp, endpoint: %q, insecure: true}
routerscope:
  export: {batch_timeout: 10ms}
  watch_interval: 10ms
  discovery:
    interval: 20ms
    rules:
      - name: traced
        executable: %q
        probes: [%q]
%s`, endpoint, executable, probeFile, extra)
	writeAtomic(t, path, body)
}

// writeAtomic writes and renames, as editors and ConfigMap updates do, so
// the watcher never reads half a file.
func writeAtomic(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestReloadOnFileChange(t *testing.T) {
	rcv := otlptest.StartT(t)
	dir := t.TempDir()
	alphaPath, betaPath := filepath.Join(dir, "bin", "alpha"), filepath.Join(dir, "bin", "beta")
	alpha, beta := startCopy(t, alphaPath), startCopy(t, betaPath)
	probe1 := writeProbe(t, dir, "p1.yaml", "probes: [1]\n")
	cfgPath := filepath.Join(dir, "agent.yaml")
	writeConfig(t, cfgPath, rcv.Endpoint(), alphaPath, probe1, "")
	cfg, err := config.LoadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}

	// Beta's capture is driven by the test, to hold a span open across
	// reloads.
	betaSrc := newChanSource()
	engine := &capture{}
	engine.source = func(req AttachRequest) EventSource {
		if req.Target.PID == beta.Process.Pid {
			return betaSrc
		}
		return &liveSource{pid: req.Target.PID, closed: make(chan struct{})}
	}
	ln := localListener(t)
	addr := ln.Addr().String()
	log, logs := observedLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := runAsync(ctx, cfg, engine.attach, log, WithMetricsListener(ln))
	testenv.Eventually(t, "alpha attached", func() bool { return engine.attachedPIDs()[alpha.Process.Pid] == 1 })

	// The rule now selects beta: alpha detached, beta attached.
	writeConfig(t, cfgPath, rcv.Endpoint(), betaPath, probe1, "")
	testenv.Eventually(t, "beta attached after the reload", func() bool { return engine.attachedPIDs()[beta.Process.Pid] == 1 })
	testenv.Eventually(t, "alpha detached", func() bool {
		return metricValue(scrape(t, addr), "routerscope_detaches_total", "reason="+reasonUnmatched) == 1
	})
	if got := metricValue(scrape(t, addr), "routerscope_config_reloads_total", "result=applied"); got != 1 {
		t.Fatalf("reloads applied %v", got)
	}

	// A request in flight in beta across the next reloads.
	open := spantest.Request(uint32(beta.Process.Pid), 7, time.Now())
	betaSrc.ch <- open[0]

	// A bad config is refused; beta stays attached, its span open.
	writeAtomic(t, cfgPath, "routerscope:\n  discovery:\n    rules:\n      - comm: router\n        bogus: 1\n")
	testenv.Eventually(t, "bad config refused", func() bool {
		return metricValue(scrape(t, addr), "routerscope_config_reloads_total", "result=refused") == 1
	})
	refused := logs.FilterMessage("config reload refused: the running config stays in effect; fix the file and save it again (or send SIGHUP)").All()
	if len(refused) != 1 || !strings.Contains(fmt.Sprint(refused[0].ContextMap()["error"]), "routerscope.discovery.rules[0].bogus") {
		t.Fatalf("refusal log %v", refused)
	}
	// A config naming a probe file that does not exist is refused too.
	writeConfig(t, cfgPath, rcv.Endpoint(), betaPath, filepath.Join(dir, "missing.yaml"), "")
	testenv.Eventually(t, "missing probe file refused", func() bool {
		return metricValue(scrape(t, addr), "routerscope_config_reloads_total", "result=refused") == 2
	})
	// Back to the good config plus an unrelated rule: beta's attachment is
	// unchanged, so its in-flight span completes normally.
	gamma := filepath.Join(dir, "bin", "gamma")
	writeConfig(t, cfgPath, rcv.Endpoint(), betaPath, probe1, fmt.Sprintf("      - {name: gamma, executable: %q}\n  probes: [%q]\n", gamma, probe1))
	testenv.Eventually(t, "good config applied", func() bool {
		return metricValue(scrape(t, addr), "routerscope_config_reloads_total", "result=applied") == 2
	})
	for _, ev := range open[1:] {
		betaSrc.ch <- ev
	}
	spans, err := rcv.WaitForSpans(ctxTimeout(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range spans {
		if s.Status.GetMessage() != "" {
			t.Errorf("in-flight span %s ended with %q across reloads", s.Name, s.Status.GetMessage())
		}
	}
	if got := engine.attachedPIDs()[beta.Process.Pid]; got != 1 {
		t.Fatalf("beta attached %d times; an unchanged attachment must stay", got)
	}

	// Editing the probe file re-attaches beta with the new content; the
	// span it had open ends as detached rather than hanging.
	betaSrc.ch <- spantest.Request(uint32(beta.Process.Pid), 8, time.Now())[0]
	writeAtomic(t, probe1, "probes: [1, 2]\n")
	testenv.Eventually(t, "beta re-attached after its probe file changed", func() bool { return engine.attachedPIDs()[beta.Process.Pid] == 2 })
	reqs := engine.requests()
	if last := reqs[len(reqs)-1]; last.ProbeDigest == reqs[1].ProbeDigest {
		t.Errorf("probe digest unchanged after the probe file changed: %q", last.ProbeDigest)
	}
	testenv.Eventually(t, "open span ended as detached", func() bool {
		return metricValue(scrape(t, addr), "routerscope_spans_unfinished_total", "reason=detached") == 1
	})
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}

func TestReloadOnSignalKeepsPipelineSettings(t *testing.T) {
	rcv := otlptest.StartT(t)
	dir := t.TempDir()
	alphaPath := filepath.Join(dir, "bin", "alpha")
	alpha := startCopy(t, alphaPath)
	cfg := discoveryConfig(t, rcv.Endpoint(), dir, filepath.Join(dir, "bin", "nothing"))
	cfg.Agent.WatchInterval = 0
	var mu sync.Mutex
	next := cfg
	loads := 0
	load := func() (config.Config, error) {
		mu.Lock()
		defer mu.Unlock()
		loads++
		return next, nil
	}
	hup := make(chan os.Signal, 1)
	engine := &capture{}
	log, logs := observedLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var scans scanCount
	wait := runAsync(ctx, cfg, engine.attach, log, WithReload(load), WithReloadSignal(hup), scans.option())

	mu.Lock()
	next.Agent.Discovery = config.Discovery{Interval: 20 * time.Millisecond, RetryInterval: time.Second, MaxProcesses: 4,
		Rules: []config.Rule{{Name: "alpha", Selector: config.Selector{Executable: alphaPath}}}}
	next.Tracing.Exporter.Endpoint = "elsewhere:4317"
	next.Tracing.Sampling = config.Sampling{Type: config.SamplingProbabilistic, Rate: 0.5}
	if err := next.Validate(); err != nil {
		t.Fatal(err)
	}
	mu.Unlock()
	hup <- os.Interrupt // any value: the channel is the signal
	testenv.Eventually(t, "alpha attached after SIGHUP", func() bool { return engine.attachedPIDs()[alpha.Process.Pid] == 1 })
	if r := engine.requests()[0]; r.SampleRatio != 0.5 || r.Rule != "alpha" {
		t.Fatalf("request after reload %+v", r)
	}
	kept := logs.FilterMessage("config reload: these settings need a restart and keep their running values").All()
	if len(kept) != 1 || fmt.Sprint(kept[0].ContextMap()["keys"]) != "[observability.tracing.exporter]" {
		t.Fatalf("kept settings log %v", kept)
	}
	// Spans still go to the running exporter's endpoint.
	if _, err := rcv.WaitForSpans(ctxTimeout(t), 2); err != nil {
		t.Fatal(err)
	}
	// always_off on reload detaches everything.
	mu.Lock()
	next.Tracing.Sampling = config.Sampling{Type: config.SamplingAlwaysOff}
	mu.Unlock()
	hup <- os.Interrupt
	testenv.Eventually(t, "detached by always_off", func() bool {
		return logs.FilterMessage("detached").Len() == 1
	})
	// Several scans later it is still detached.
	scans.wait(t, 5)
	if got := engine.attachedPIDs()[alpha.Process.Pid]; got != 1 {
		t.Fatalf("attached %d times after always_off", got)
	}
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if loads != 2 {
		t.Fatalf("loaded %d times, want 2", loads)
	}
}

func TestDiscoveryStartsIdleWhenDisabledAndReloadTurnsItOn(t *testing.T) {
	rcv := otlptest.StartT(t)
	dir := t.TempDir()
	routerPath := filepath.Join(dir, "bin", "router")
	p := startCopy(t, routerPath)
	cfg := discoveryConfig(t, rcv.Endpoint(), dir, routerPath)
	cfg.Tracing.Enabled = false
	next := cfg
	next.Tracing.Enabled = true
	hup := make(chan os.Signal, 1)
	engine := &capture{}
	ln := localListener(t)
	log, logs := observedLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := runAsync(ctx, cfg, engine.attach, log, WithMetricsListener(ln),
		WithReload(func() (config.Config, error) { return next, nil }), WithReloadSignal(hup))
	// Idle but up: the metrics answer, and nothing is attached.
	testenv.Eventually(t, "metrics served while idle", func() bool {
		return metricValue(scrape(t, ln.Addr().String()), "routerscope_processes_attached") == 0
	})
	if logs.FilterMessage("attaching nothing").Len() != 1 || len(engine.requests()) != 0 {
		t.Fatalf("attached %v while disabled", engine.requests())
	}
	hup <- os.Interrupt
	testenv.Eventually(t, "attached once enabled", func() bool { return engine.attachedPIDs()[p.Process.Pid] == 1 })
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}

// TestKernelConfigNeedsRestart: a reload keeps the loaded capture's sizes
// and says so.
func TestKernelConfigNeedsRestart(t *testing.T) {
	cur := config.DefaultConfig()
	next := config.DefaultConfig()
	next.Agent.Kernel = config.Kernel{RingBufferBytes: 8 << 20, MapEntries: map[string]int{"stacks": 100}}
	kept := keepPipelineSettings(cur, &next)
	if strings.Join(kept, ",") != "routerscope.kernel" {
		t.Errorf("kept %v, want routerscope.kernel", kept)
	}
	if next.Agent.Kernel.RingBufferBytes != 0 || next.Agent.Kernel.MapEntries != nil {
		t.Errorf("reloaded kernel settings %+v, want the running ones", next.Agent.Kernel)
	}
}

// TestWatchHashIsBounded: the config watcher's hash reads no more of a
// file than the config loader would (MaxConfigBytes), even of one that
// never ends.
func TestWatchHashIsBounded(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, []byte("routerscope: {}\n"+strings.Repeat("#", config.MaxConfigBytes)), 0o600); err != nil {
		t.Fatal(err)
	}
	hashFiles([]string{"/dev/zero", big})
}
