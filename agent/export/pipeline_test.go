package export

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/agent/spans"
	"github.com/routerscope/routerscope/agent/spans/spantest"
)

// keepExporter keeps every exported span.
type keepExporter struct {
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
	shut  int
}

func (k *keepExporter) ExportSpans(_ context.Context, s []sdktrace.ReadOnlySpan) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.spans = append(k.spans, s...)
	return nil
}

func (k *keepExporter) Shutdown(context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.shut++
	return nil
}

func TestPipelineResourcePerProcess(t *testing.T) {
	cfg := config.DefaultConfig()
	cfg.Agent.Discovery.MaxProcesses = 2
	exp := &keepExporter{}
	pipe, err := NewPipeline(cfg, exp, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pipe.AddProcess(10, []attribute.KeyValue{attribute.Int("process.pid", 10), attribute.String("container.id", "c10")}); err != nil {
		t.Fatal(err)
	}
	if err := pipe.AddProcess(20, []attribute.KeyValue{attribute.Int("process.pid", 20)}); err != nil {
		t.Fatal(err)
	}
	if err := pipe.AddProcess(30, nil); !errors.Is(err, ErrTooManyProcesses) {
		t.Fatalf("third process past max_processes 2: %v", err)
	}
	a := spans.NewAssembler(pipe.Emit, time.Hour)
	for _, pid := range []uint32{10, 20, 30} {
		for _, ev := range spantest.Request(pid, byte(pid), spantest.BaseTime) {
			a.Handle(ev)
		}
	}
	// Removing a process flushes its provider; the shared exporter stays.
	pipe.RemoveProcess(10)
	if err := pipe.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if exp.shut != 1 {
		t.Fatalf("shared exporter shut down %d times, want once", exp.shut)
	}
	byPID := map[string]int{}
	for _, s := range exp.spans {
		res := map[string]string{}
		for _, kv := range s.Resource().Attributes() {
			res[string(kv.Key)] = kv.Value.Emit()
		}
		if res["service.name"] != config.DefaultServiceName {
			t.Errorf("span without the config's resource: %v", res)
		}
		byPID[res["process.pid"]]++
		if res["process.pid"] == "10" && res["container.id"] != "c10" {
			t.Errorf("pid 10 resource %v", res)
		}
	}
	// Pid 30 had no provider: its spans carry the config's resource only.
	if byPID["10"] != 2 || byPID["20"] != 2 || byPID[""] != 2 {
		t.Fatalf("spans by resource pid %v", byPID)
	}
	if st := pipe.Stats(); st.Ended != 6 || st.Exported != 6 || st.Dropped != 0 || st.Queued != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPipelineQueueBoundSpansProviders(t *testing.T) {
	cfg := config.DefaultConfig()
	cfg.Agent.Export = config.ExportSettings{QueueSize: 3, MaxBatchSize: 1, BatchTimeout: time.Millisecond, ShutdownTimeout: 10 * time.Second}
	exp := &blockingExporter{release: make(chan struct{})}
	pipe, err := NewPipeline(cfg, exp, nil)
	if err != nil {
		t.Fatal(err)
	}
	for pid := uint32(1); pid <= 4; pid++ {
		if err := pipe.AddProcess(pid, nil); err != nil {
			t.Fatal(err)
		}
	}
	a := spans.NewAssembler(pipe.Emit, time.Hour)
	// Four providers, each could queue 3 on its own; together at most 3
	// spans wait, the rest are dropped and counted, and nothing blocks.
	for i := 0; i < 10; i++ {
		for pid := uint32(1); pid <= 4; pid++ {
			for _, ev := range spantest.Request(pid, byte(i), spantest.BaseTime) {
				a.Handle(ev)
			}
		}
	}
	st := pipe.Stats()
	if st.Queued > 3 || st.Queued == 0 || st.Ended != 80 || st.Dropped < 77 || st.Dropped+st.Queued != 80 {
		t.Fatalf("stats with a stalled exporter %+v", st)
	}
	close(exp.release)
	if err := pipe.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	st = pipe.Stats()
	if st.Queued != 0 || st.Exported+st.Dropped != 80 || int(st.Exported) != exp.got {
		t.Fatalf("stats after shutdown %+v, exporter got %d", st, exp.got)
	}
}
