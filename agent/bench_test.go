package agent

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkAssembleAndReplay measures the user-space cost per span: pairing
// events, typing attributes and replaying through the SDK's batch
// processor into a discarding exporter.
func BenchmarkAssembleAndReplay(b *testing.B) {
	cfg := DefaultConfig()
	pipe, err := NewPipeline(cfg, discardExporter{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	a := NewAssembler(pipe.Emit, time.Hour)
	evs := request(1, 1, baseTime)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, ev := range evs {
			a.Handle(ev)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/span")
	if err := pipe.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkScanProc measures one discovery scan of this machine's /proc
// with a typical rule (executable glob plus command line): the cost paid
// every discovery interval.
func BenchmarkScanProc(b *testing.B) {
	d := Discovery{Interval: 1, RetryInterval: 1, MaxProcesses: 1,
		Rules: []Rule{{Name: "router", Selector: Selector{Executable: "/usr/local/bin/router*", Cmdline: "--config"}}}}
	if err := d.validate(); err != nil {
		b.Fatal(err)
	}
	pids, _ := listPIDs("/proc")
	b.ReportMetric(float64(len(pids)), "processes")
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			if _, err := scanProcesses("/proc", d.Rules, nil, nil, 0, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	// What the agent pays per interval: processes seen before are only
	// checked for restarts.
	b.Run("cached", func(b *testing.B) {
		cache := procCache{}
		for b.Loop() {
			if _, err := scanProcesses("/proc", d.Rules, nil, nil, 0, cache); err != nil {
				b.Fatal(err)
			}
		}
	})
}
