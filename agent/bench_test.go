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
