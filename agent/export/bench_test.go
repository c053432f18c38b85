package export

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/agent/spans"
	"github.com/routerscope/routerscope/agent/spans/spantest"
)

// marshalClient is an otlptrace.Client that serializes every upload the
// way the gRPC client does, into a reused buffer, and sends it nowhere.
type marshalClient struct {
	buf   []byte
	bytes int
}

func (*marshalClient) Start(context.Context) error { return nil }

func (*marshalClient) Stop(context.Context) error { return nil }

func (c *marshalClient) UploadTraces(_ context.Context, rss []*tracepb.ResourceSpans) error {
	var err error
	c.buf, err = proto.MarshalOptions{}.MarshalAppend(c.buf[:0], &collectorpb.ExportTraceServiceRequest{ResourceSpans: rss})
	c.bytes += len(c.buf)
	return err
}

// benchFlushEvery is how many spans a benchmark emits between flushes, so
// the queue never fills (a dropped span would flatter the figures).
const benchFlushEvery = 1024

func benchPipeline(b *testing.B) (*Pipeline, *marshalClient) {
	cfg := config.DefaultConfig()
	cfg.Agent.Export.QueueSize = 4 * benchFlushEvery
	c := &marshalClient{}
	pipe, err := NewOTLPPipeline(context.Background(), cfg, c, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := pipe.AddProcess(1, []attribute.KeyValue{attribute.Int("process.pid", 1)}); err != nil {
		b.Fatal(err)
	}
	return pipe, c
}

func finishBench(b *testing.B, pipe *Pipeline, c *marshalClient, spans int) {
	b.StopTimer()
	if err := pipe.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}
	st := pipe.Stats()
	if st.Dropped != 0 || st.Failed != 0 || st.Exported != st.Ended {
		b.Fatalf("spans not all exported: %+v", st)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(spans), "ns/span")
	b.ReportMetric(float64(c.bytes)/float64(spans), "wire-B/span")
}

// BenchmarkExportOTLP measures the export hot path per span, from a
// finished span record to serialized OTLP bytes: queueing, batching,
// grouping by resource, encoding and protobuf marshalling. allocs/op is
// per span: the records are built before the timer, as the assembler
// would have, so what it reports is what export adds.
func BenchmarkExportOTLP(b *testing.B) {
	pipe, c := benchPipeline(b)
	recs := wireRecords()[:2] // a root and a child with the guide's attribute kinds
	for i := range recs {
		recs[i].PID = 1
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pipe.Emit(recs[i&1])
		if i%benchFlushEvery == benchFlushEvery-1 {
			if err := pipe.ForceFlush(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := pipe.ForceFlush(context.Background()); err != nil {
		b.Fatal(err)
	}
	finishBench(b, pipe, c, b.N)
}

// BenchmarkAssembleAndExport measures the agent's user-space cost per span
// after decoding: pairing entry and return events, typing attributes and
// the export of BenchmarkExportOTLP. allocs/op is per request of two
// spans; the span records' attributes are what the spans keep.
func BenchmarkAssembleAndExport(b *testing.B) {
	pipe, c := benchPipeline(b)
	a := spans.NewAssembler(pipe.Emit, time.Hour)
	evs := spantest.Request(1, 1, spantest.BaseTime)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, ev := range evs {
			a.Handle(ev)
		}
		if i%(benchFlushEvery/2) == benchFlushEvery/2-1 {
			if err := pipe.ForceFlush(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := pipe.ForceFlush(context.Background()); err != nil {
		b.Fatal(err)
	}
	finishBench(b, pipe, c, 2*b.N)
}
