package agent

import (
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/routerscope/routerscope/agent/spans"

	"go.opentelemetry.io/otel/attribute"
	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/internal/testenv"
)

// marshalClient is an otlptrace.Client that serializes every upload the
// way the gRPC client does, into a reused buffer, and sends it nowhere.
type marshalClient struct {
	buf   []byte
	bytes int
}

func (*marshalClient) Start(context.Context) error { return nil }
func (*marshalClient) Stop(context.Context) error  { return nil }
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
	evs := request(1, 1, baseTime)
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

// BenchmarkScanProc measures one discovery scan of this machine's /proc
// with a typical rule (executable glob plus command line): the cost paid
// every discovery interval.
func BenchmarkScanProc(b *testing.B) {
	d := config.Discovery{Interval: 1, RetryInterval: 1, MaxProcesses: 1,
		Rules: []config.Rule{{Name: "router", Selector: config.Selector{Executable: "/usr/local/bin/router*", Cmdline: "--config"}}}}
	if err := d.Validate(); err != nil {
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

// BenchmarkRestartToAttach measures, with the default discovery interval,
// the time from starting a matching process to its attach: the delay a
// restarted router goes untraced (the product promises under 2 s).
func BenchmarkRestartToAttach(b *testing.B) {
	dir := b.TempDir()
	path := testenv.CopyExecutable(b, "/bin/sleep", filepath.Join(dir, "router"))
	cfg := config.DefaultConfig()
	cfg.Agent.Metrics.Listen = ""
	cfg.Agent.Probes = []string{path} // any readable file
	cfg.Agent.Discovery.Rules = []config.Rule{{Name: "router", Selector: config.Selector{Executable: path}}}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	attached := make(chan int, 16)
	attach := func(_ context.Context, req AttachRequest) (EventSource, error) {
		attached <- req.Target.PID
		return &liveSource{pid: req.Target.PID, closed: make(chan struct{})}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, attach, zap.NewNop(), WithStdout(io.Discard)) }()
	var total, worst time.Duration
	for i := 0; b.Loop(); i++ {
		// Start at varying phases of the scan ticker: back-to-back starts
		// would all land just after a scan.
		time.Sleep(time.Duration(i*97%500) * time.Millisecond)
		cmd := exec.Command(path, "300")
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for pid := range attached {
			if pid == cmd.Process.Pid {
				break
			}
		}
		d := time.Since(start)
		total += d
		worst = max(worst, d)
		stopProcess(cmd)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/attach")
	b.ReportMetric(float64(worst.Milliseconds()), "max-ms/attach")
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
