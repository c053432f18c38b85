package collectortest

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// receiveTimeout bounds how long a test waits for spans to pass through the collector;
// it is a hang guard, not a speed assertion.
const receiveTimeout = 60 * time.Second

// sink is a minimal OTLP/gRPC trace receiver: every export request goes to a channel.
type sink struct {
	coltracepb.UnimplementedTraceServiceServer
	reqs chan *coltracepb.ExportTraceServiceRequest
}

// Export hands the request to the test; a full channel means the test stopped reading,
// so the request is refused rather than blocking the collector's exporter forever.
func (s *sink) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	select {
	case s.reqs <- req:
		return &coltracepb.ExportTraceServiceResponse{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// startSink serves a sink on a free loopback port until the test ends.
func startSink(t *testing.T) (*sink, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen for the test OTLP receiver: %v", err)
	}
	s := &sink{reqs: make(chan *coltracepb.ExportTraceServiceRequest, 16)}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, s)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("test OTLP receiver: %v", err)
		}
	})
	return s, l.Addr().String()
}

// sendSpans exports a parent span and its child to endpoint with the OTel SDK and returns
// their span contexts.
func sendSpans(t *testing.T, endpoint string) (parent, child trace.SpanContext) {
	t.Helper()
	ctx := context.Background()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(endpoint), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatalf("create OTLP exporter: %v", err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", "collectortest"))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(res))
	tracer := tp.Tracer("collectortest")

	pctx, p := tracer.Start(ctx, "semantic_router.request.received",
		trace.WithAttributes(attribute.String("request.id", "req-1")))
	_, c := tracer.Start(pctx, "semantic_router.cache.lookup",
		trace.WithAttributes(attribute.Bool("cache.hit", false)))
	c.End()
	p.End()

	sctx, cancel := context.WithTimeout(ctx, receiveTimeout)
	defer cancel()
	if err := tp.Shutdown(sctx); err != nil {
		t.Fatalf("shut down tracer provider (flushes the spans to the collector): %v", err)
	}
	return p.SpanContext(), c.SpanContext()
}

// receiveSpans collects spans from the sink until want have arrived.
func receiveSpans(t *testing.T, s *sink, want int) []*tracepb.ResourceSpans {
	t.Helper()
	var got []*tracepb.ResourceSpans
	n := 0
	timeout := time.After(receiveTimeout)
	for n < want {
		select {
		case req := <-s.reqs:
			for _, rs := range req.GetResourceSpans() {
				got = append(got, rs)
				for _, ss := range rs.GetScopeSpans() {
					n += len(ss.GetSpans())
				}
			}
		case <-timeout:
			t.Fatalf("received %d of %d spans through the collector within %v", n, want, receiveTimeout)
		}
	}
	return got
}

func attr(attrs []*commonpb.KeyValue, key string) (*commonpb.AnyValue, bool) {
	for _, kv := range attrs {
		if kv.GetKey() == key {
			return kv.GetValue(), true
		}
	}
	return nil, false
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the OpenTelemetry Collector (minutes when not cached); run without -short")
	}
}

// TestSpansPassThroughCollector sends two spans with the SDK to the collector and checks
// they reach the test's receiver through the collector's OTLP exporter with identity,
// parentage, attributes and resource intact, and nothing more.
func TestSpansPassThroughCollector(t *testing.T) {
	skipShort(t)
	s, sinkAddr := startSink(t)
	listen := FreeEndpoint(t)
	stop := Start(t, listen, sinkAddr)

	parent, child := sendSpans(t, listen)
	got := receiveSpans(t, s, 2)

	byID := map[trace.SpanID]*tracepb.Span{}
	for _, rs := range got {
		v, ok := attr(rs.GetResource().GetAttributes(), "service.name")
		if !ok || v.GetStringValue() != "collectortest" {
			t.Errorf("resource service.name = %v (present %v), want collectortest", v, ok)
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				id := trace.SpanID(sp.GetSpanId())
				if _, dup := byID[id]; dup {
					t.Errorf("span %s %s received twice", sp.GetName(), id)
				}
				byID[id] = sp
			}
		}
	}
	if len(byID) != 2 {
		t.Fatalf("received %d distinct spans, want 2", len(byID))
	}
	p, c := byID[parent.SpanID()], byID[child.SpanID()]
	if p == nil || c == nil {
		t.Fatalf("received span IDs %v, want the sent %s and %s", keys(byID), parent.SpanID(), child.SpanID())
	}
	for _, sp := range []*tracepb.Span{p, c} {
		if trace.TraceID(sp.GetTraceId()) != parent.TraceID() {
			t.Errorf("span %s trace ID %x, want %s", sp.GetName(), sp.GetTraceId(), parent.TraceID())
		}
	}
	if p.GetName() != "semantic_router.request.received" || c.GetName() != "semantic_router.cache.lookup" {
		t.Errorf("span names %q, %q; want semantic_router.request.received, semantic_router.cache.lookup", p.GetName(), c.GetName())
	}
	if len(p.GetParentSpanId()) != 0 {
		t.Errorf("root span has parent %x, want none", p.GetParentSpanId())
	}
	if trace.SpanID(c.GetParentSpanId()) != parent.SpanID() {
		t.Errorf("child parent span ID %x, want %s", c.GetParentSpanId(), parent.SpanID())
	}
	if v, ok := attr(p.GetAttributes(), "request.id"); !ok || v.GetStringValue() != "req-1" {
		t.Errorf("root request.id = %v (present %v), want req-1", v, ok)
	}
	if v, ok := attr(c.GetAttributes(), "cache.hit"); !ok || v.GetValue() == nil || v.GetBoolValue() {
		t.Errorf("child cache.hit = %v (present %v), want false", v, ok)
	}

	// Stopping must release the port: a collector left running would hold it, and the
	// next test's collector would fail to bind.
	stop()
	if conn, err := net.DialTimeout("tcp", listen, time.Second); err == nil {
		_ = conn.Close()
		t.Errorf("%s still accepts connections after stop", listen)
	}
	stop() // idempotent: a second call (and the cleanup's) must not signal a reaped process
}

func keys(m map[trace.SpanID]*tracepb.Span) []string {
	var out []string
	for id := range m {
		out = append(out, id.String())
	}
	return out
}

// TestLaunchReportsPortInUse checks that a collector that cannot bind fails fast with its
// own explanation instead of the readiness wait timing out.
func TestLaunchReportsPortInUse(t *testing.T) {
	skipShort(t)
	bin := Binary(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer taken.Close()
	// The kernel completes TCP handshakes on this listener's backlog, so a port probe alone
	// would call the collector ready: the error has to come from the collector exiting.
	c, err := launch(bin, filepath.Join(repoRoot(t), e2eConfig), taken.Addr().String(), FreeEndpoint(t))
	if err == nil {
		_ = c.stop()
		t.Fatalf("launch on %s, a port this test holds, reported a ready collector", taken.Addr())
	}
	t.Logf("launch error: %v", err)
	if !errors.Is(err, ErrExited) {
		t.Errorf("launch error is not ErrExited: %v", err)
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("launch error does not carry the collector's reason (address already in use): %v", err)
	}
}

// TestLaunchRejectsBadEndpoint checks input validation before any process starts.
func TestLaunchRejectsBadEndpoint(t *testing.T) {
	for _, tc := range []struct{ listen, export string }{
		{"localhost", "127.0.0.1:4317"},
		{"127.0.0.1:4317", ""},
	} {
		_, err := launch("/nonexistent/collector", "/nonexistent.yaml", tc.listen, tc.export)
		if err == nil || !strings.Contains(err.Error(), "is not host:port") {
			t.Errorf("launch(listen %q, export %q) error = %v, want a host:port complaint", tc.listen, tc.export, err)
		}
	}
}

func TestTailBufferKeepsLatest(t *testing.T) {
	b := &tailBuffer{limit: 8}
	for _, s := range []string{"0123", "4567", "89ab"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got := b.String(); got != "456789ab" {
		t.Errorf("kept %q, want the last 8 bytes 456789ab", got)
	}
}
