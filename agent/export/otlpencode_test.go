package export

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/agent/spans"
	"github.com/routerscope/routerscope/agent/spans/spantest"
)

// captureClient is an otlptrace.Client that keeps a copy of every upload
// (the pipeline reuses its messages after UploadTraces returns).
type captureClient struct {
	mu      sync.Mutex
	got     []*tracepb.ResourceSpans
	started bool
	stopped bool
}

func (c *captureClient) Start(context.Context) error { c.started = true; return nil }
func (c *captureClient) Stop(context.Context) error  { c.stopped = true; return nil }
func (c *captureClient) UploadTraces(_ context.Context, rss []*tracepb.ResourceSpans) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range rss {
		c.got = append(c.got, proto.Clone(rs).(*tracepb.ResourceSpans))
	}
	return nil
}

func (c *captureClient) spans() map[string]*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return spansByName(c.got)
}

func spansByName(rss []*tracepb.ResourceSpans) map[string]*tracepb.Span {
	out := map[string]*tracepb.Span{}
	for _, rs := range rss {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				out[s.Name] = s
			}
		}
	}
	return out
}

// sdkReplay is the way spans were exported before the direct encoder:
// each record replayed through an SDK TracerProvider with the kernel's
// ids, then the SDK's OTLP exporter. It is the reference the encoder's
// wire output is compared with.
type sdkReplay struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
}

type replayKey struct{}

type replayIDs struct{}

func (replayIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	r := ctx.Value(replayKey{}).(*spans.SpanRecord)
	return r.TraceID, r.SpanID
}

func (replayIDs) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	return ctx.Value(replayKey{}).(*spans.SpanRecord).SpanID
}

func newSDKReplay(t *testing.T, cfg config.Config, client otlptrace.Client, attrs []attribute.KeyValue) *sdkReplay {
	t.Helper()
	exp, err := otlptrace.New(context.Background(), client)
	if err != nil {
		t.Fatal(err)
	}
	pipe, err := NewPipeline(cfg, &keepExporter{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pipe.AddProcess(7, attrs); err != nil {
		t.Fatal(err)
	}
	res := pipe.procs[7].res
	_ = pipe.Shutdown(context.Background())
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithIDGenerator(replayIDs{}),
		sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	return &sdkReplay{tp: tp, tracer: tp.Tracer(instrumentationName, trace.WithInstrumentationVersion(Version))}
}

func (s *sdkReplay) emit(r spans.SpanRecord) {
	ctx := context.WithValue(context.Background(), replayKey{}, &r)
	if r.ParentSpanID.IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: r.TraceID, SpanID: r.ParentSpanID, TraceFlags: trace.FlagsSampled, Remote: r.RemoteParent}))
	}
	_, span := s.tracer.Start(ctx, r.Name, trace.WithTimestamp(r.Start), trace.WithSpanKind(r.Kind),
		trace.WithAttributes(r.Attributes...))
	if r.Failed {
		span.SetStatus(codes.Error, r.StatusMessage)
	}
	span.End(trace.WithTimestamp(r.End))
}

// wireRecords covers what the wire output carries: a local root, a child,
// a span under a remote parent, a failed span, every attribute kind the
// agent makes, a key set twice, an invalid attribute and more attributes
// than the limit.
func wireRecords() []spans.SpanRecord {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 123456789, time.UTC)
	tr := trace.TraceID(spantest.TraceID(1))
	many := make([]attribute.KeyValue, 0, spanAttributeLimit+5)
	for i := range spanAttributeLimit + 5 {
		many = append(many, attribute.Int(fmt.Sprintf("k%03d", i), i))
	}
	return []spans.SpanRecord{
		{Name: "root", Kind: trace.SpanKindServer, TraceID: tr, SpanID: spantest.SpanID(1), Sampled: true, PID: 7,
			Start: t0, End: t0.Add(50 * time.Millisecond),
			Attributes: []attribute.KeyValue{attribute.String("request.id", "r1"), attribute.Int64("n", -3),
				attribute.Bool("b", true), attribute.Float64("f", 1.5), attribute.StringSlice("pii.types", []string{"email", "phone"})}},
		{Name: "child", Kind: trace.SpanKindInternal, TraceID: tr, SpanID: spantest.SpanID(2), ParentSpanID: spantest.SpanID(1), Sampled: true, PID: 7,
			Start: t0.Add(time.Millisecond), End: t0.Add(46 * time.Millisecond), Failed: true, StatusMessage: "classifier down",
			Attributes: []attribute.KeyValue{attribute.String("a", "1"), attribute.String("a", "2"), {Key: "", Value: attribute.StringValue("x")},
				attribute.Bool("error", true)}},
		{Name: "remote", Kind: trace.SpanKindClient, TraceID: tr, SpanID: spantest.SpanID(3), ParentSpanID: spantest.SpanID(9), RemoteParent: true, Sampled: true, PID: 7,
			Start: t0.Add(2 * time.Millisecond), End: t0.Add(3 * time.Millisecond), Attributes: many},
		{Name: "bare", Kind: trace.SpanKindProducer, TraceID: tr, SpanID: spantest.SpanID(4), ParentSpanID: spantest.SpanID(1), Sampled: true, PID: 7,
			Start: t0, End: t0},
	}
}

// TestOTLPWireMatchesSDK checks that the direct encoder sends what the
// SDK's replay and OTLP exporter sent for the same records.
func TestOTLPWireMatchesSDK(t *testing.T) {
	cfg := spantest.OTLPConfig("unused:1")
	procAttrs := []attribute.KeyValue{attribute.Int("process.pid", 7), attribute.String("container.id", "c7")}
	want := &captureClient{}
	ref := newSDKReplay(t, cfg, want, procAttrs)
	for _, r := range wireRecords() {
		ref.emit(r)
	}
	if err := ref.tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	got := &captureClient{}
	pipe, err := NewOTLPPipeline(context.Background(), cfg, got, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pipe.AddProcess(7, procAttrs); err != nil {
		t.Fatal(err)
	}
	// Twice, so the second batch runs on reused messages.
	for range 2 {
		for _, r := range wireRecords() {
			pipe.Emit(r)
		}
		if err := pipe.ForceFlush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := pipe.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !got.started || !got.stopped {
		t.Errorf("client started %v stopped %v", got.started, got.stopped)
	}
	if len(got.got) != 2 || len(want.got) != 4 {
		t.Fatalf("uploads: direct %d ResourceSpans, want 2 (one per flush); SDK %d", len(got.got), len(want.got))
	}
	// The SDK's syncer sends one span per upload; compare span by span
	// and the resource and scope around them.
	wantRS := want.got[0]
	for i, rs := range got.got {
		if !proto.Equal(rs.Resource, wantRS.Resource) || rs.SchemaUrl != wantRS.SchemaUrl {
			t.Errorf("upload %d resource\n got %v %q\nwant %v %q", i, rs.Resource, rs.SchemaUrl, wantRS.Resource, wantRS.SchemaUrl)
		}
		if len(rs.ScopeSpans) != 1 || !proto.Equal(rs.ScopeSpans[0].Scope, wantRS.ScopeSpans[0].Scope) {
			t.Errorf("upload %d scope %v, want %v", i, rs.ScopeSpans, wantRS.ScopeSpans[0].Scope)
		}
		gotSpans, wantSpans := spansByName([]*tracepb.ResourceSpans{rs}), spansByName(want.got)
		names := slices.Sorted(func(yield func(string) bool) {
			for n := range wantSpans {
				if !yield(n) {
					return
				}
			}
		})
		if len(gotSpans) != len(wantSpans) {
			t.Fatalf("upload %d: spans %d, want %d", i, len(gotSpans), len(wantSpans))
		}
		for _, n := range names {
			if !proto.Equal(gotSpans[n], wantSpans[n]) {
				t.Errorf("upload %d span %s\n got %v\nwant %v", i, n, gotSpans[n], wantSpans[n])
			}
		}
	}
	if st := pipe.Stats(); st.Ended != 8 || st.Exported != 8 || st.Queued != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestOTLPGroupsByResource checks one ResourceSpans per process in a
// batch, in the order the processes first appear.
func TestOTLPGroupsByResource(t *testing.T) {
	got := &captureClient{}
	pipe, err := NewOTLPPipeline(context.Background(), config.DefaultConfig(), got, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range []uint32{10, 20} {
		if err := pipe.AddProcess(pid, []attribute.KeyValue{attribute.Int("process.pid", int(pid))}); err != nil {
			t.Fatal(err)
		}
	}
	recs := wireRecords()
	for i, pid := range []uint32{20, 10, 20, 30} {
		r := recs[i]
		r.PID = pid
		pipe.Emit(r)
	}
	// A process removed after emitting keeps its resource for what it
	// queued.
	pipe.RemoveProcess(20)
	if err := pipe.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, rs := range got.got {
		pid := "config"
		for _, kv := range rs.Resource.Attributes {
			if kv.Key == "process.pid" {
				pid = fmt.Sprint(kv.Value.GetIntValue())
			}
		}
		order = append(order, fmt.Sprintf("%s:%d", pid, len(rs.ScopeSpans[0].Spans)))
	}
	if strings.Join(order, " ") != "20:2 10:1 config:1" {
		t.Fatalf("resource groups %v, want 20:2 10:1 config:1", order)
	}
}
