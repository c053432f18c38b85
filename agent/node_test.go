package agent

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/internal/otlptest"
	"github.com/routerscope/routerscope/internal/testenv"
)

// discoveryConfig is an OTLP config whose one rule selects the executables
// at routerGlob.
func discoveryConfig(t *testing.T, endpoint, dir, routerGlob string) config.Config {
	t.Helper()
	cfg := runConfig(endpoint)
	cfg.Agent.Targets = nil
	cfg.Agent.Probes = []string{writeProbe(t, dir, "router.yaml", "probes: []\n")}
	cfg.Agent.Discovery.Rules = []config.Rule{{Name: "router", Selector: config.Selector{Executable: routerGlob}}}
	// Scan often so the test is short; the default is 500 ms.
	cfg.Agent.Discovery.Interval = 20 * time.Millisecond
	cfg.Agent.Metrics.Listen = ""
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// spansByPID groups received spans by their resource's process.pid.
func spansByPID(spans []otlptest.Span) map[int64][]otlptest.Span {
	out := map[int64][]otlptest.Span{}
	for _, s := range spans {
		v, _ := s.ResourceAttr("process.pid")
		out[v.GetIntValue()] = append(out[v.GetIntValue()], s)
	}
	return out
}

// TestDiscoveryFollowsProcesses is the point 7 with a synthetic
// capture: two matching processes and a non-matching one; one is killed
// and restarted; the agent attaches to the matching ones only, spans of
// all three lifetimes arrive with their own process's resource, and the
// metrics show the attaches and the exit.
func TestDiscoveryFollowsProcesses(t *testing.T) {
	rcv := otlptest.StartT(t)
	dir := t.TempDir()
	routerPath := filepath.Join(dir, "bin", "router")
	cfg := discoveryConfig(t, rcv.Endpoint(), dir, filepath.Join(dir, "bin", "rout*"))
	a := startCopy(t, routerPath)
	b := startCopy(t, routerPath)
	other := startCopy(t, filepath.Join(dir, "bin", "other"))

	engine := &capture{}
	ln := localListener(t)
	addr := ln.Addr().String()
	log, logs := observedLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := runAsync(ctx, cfg, engine.attach, log, WithMetricsListener(ln), withSweepInterval(10*time.Millisecond))

	testenv.Eventually(t, "both routers attached", func() bool {
		got := engine.attachedPIDs()
		return got[a.Process.Pid] == 1 && got[b.Process.Pid] == 1
	})
	if _, err := rcv.WaitForSpans(ctxTimeout(t), 4); err != nil {
		t.Fatal(err)
	}
	reqs := engine.requests()
	for _, r := range reqs {
		if r.Target.PID == other.Process.Pid {
			t.Fatalf("non-matching process attached: %+v", r)
		}
		if r.Rule != "router" || r.BuildID == "" || r.BuildID != reqs[0].BuildID || r.ProbeDigest == "" ||
			r.Executable != filepath.Join("/proc", pidString(r.Target.PID), "root", routerPath) || len(r.Probes) != 1 {
			t.Errorf("attach request %+v", r)
		}
	}
	testenv.Eventually(t, "ready with two processes attached", func() bool {
		code, _ := httpGet(t, "http://"+addr+"/readyz")
		return code == http.StatusOK
	})

	// Kill one router: detached as exited.
	stopProcess(a)
	testenv.Eventually(t, "the killed router detached", func() bool {
		return metricValue(scrape(t, addr), "routerscope_detaches_total", "reason=exited") == 1
	})
	// Restart it: a new process, attached again.
	a2 := startCopy(t, routerPath)
	testenv.Eventually(t, "the restarted router attached", func() bool { return engine.attachedPIDs()[a2.Process.Pid] == 1 })
	spans, err := rcv.WaitForSpans(ctxTimeout(t), 6)
	if err != nil {
		t.Fatal(err)
	}

	byPID := spansByPID(spans)
	for _, cmd := range []int{a.Process.Pid, b.Process.Pid, a2.Process.Pid} {
		ss := byPID[int64(cmd)]
		if len(ss) != 2 {
			t.Errorf("pid %d: %d spans, want 2 (all: %v)", cmd, len(ss), byPID)
			continue
		}
		for _, s := range ss {
			exe, _ := s.ResourceAttr("process.executable.path")
			host, _ := s.ResourceAttr("host.name")
			svc, _ := s.ResourceAttr("service.name")
			if exe.GetStringValue() != routerPath || host.GetStringValue() == "" || svc.GetStringValue() != "vllm-semantic-router" {
				t.Errorf("pid %d span %s resource: exe %v host %v service %v", cmd, s.Name, exe, host, svc)
			}
		}
	}
	if len(byPID) != 3 {
		t.Errorf("spans of %d processes, want 3: %v", len(byPID), byPID)
	}

	// The synthetic sources report their attach number as lost events,
	// read at each sweep and at detach: 1 + 2 + 3.
	testenv.Eventually(t, "lost events counted", func() bool {
		return metricValue(scrape(t, addr), "routerscope_ringbuf_lost_events_total") == 6
	})
	m := scrape(t, addr)
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"routerscope_attaches_total", []string{"rule=router"}, 3},
		{"routerscope_detaches_total", []string{"reason=exited"}, 1},
		{"routerscope_processes_attached", nil, 2},
		{"routerscope_events_total", []string{"probe=semantic_router.request.received", "kind=entry"}, 3},
		{"routerscope_events_total", []string{"probe=semantic_router.classification", "kind=return"}, 3},
		{"routerscope_spans_exported_total", nil, 6},
		{"routerscope_export_queue_length", nil, 0},
		{"routerscope_export_queue_dropped_total", nil, 0},
	}
	// Counters of export calls move when the call returns, just after the
	// receiver has the spans: poll until they settle.
	var mismatch string
	deadline := time.Now().Add(30 * time.Second)
	for {
		mismatch = ""
		for _, c := range checks {
			if got := metricValue(m, c.name, c.labels...); got != c.want {
				mismatch += fmt.Sprintf("%s%v = %v, want %v; ", c.name, c.labels, got, c.want)
			}
		}
		if mismatch == "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
		m = scrape(t, addr)
	}
	if mismatch != "" {
		t.Error(mismatch)
	}
	if got := metricValue(m, "routerscope_attach_errors_total"); got != -1 {
		t.Errorf("attach errors %v, want none", got)
	}
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if n := logs.FilterMessage("detached").Len(); n != 3 {
		t.Errorf("%d detach logs, want 3 (one exit, two at stop)", n)
	}
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
