package export

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/agent/spans"
	"github.com/routerscope/routerscope/agent/spans/spantest"
	"github.com/routerscope/routerscope/internal/otlptest"
	"github.com/routerscope/routerscope/probes"
)

// replay assembles events and sends them through a pipeline to exp, or
// with exp nil through the pipeline the config names (NewSpanPipeline: the
// direct OTLP encoder for otlp), as the agent does.
func replay(t *testing.T, cfg config.Config, exp sdktrace.SpanExporter, evs []probes.Event) *Pipeline {
	t.Helper()
	var pipe *Pipeline
	var err error
	if exp == nil {
		pipe, err = NewSpanPipeline(context.Background(), cfg, io.Discard, nil)
	} else {
		pipe, err = NewPipeline(cfg, exp, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	a := spans.NewAssembler(pipe.Emit, time.Hour)
	for _, ev := range evs {
		a.Handle(ev)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pipe.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	return pipe
}

func TestExportOTLP(t *testing.T) {
	rcv := otlptest.StartT(t)
	cfg := spantest.OTLPConfig(rcv.Endpoint())
	evs := spantest.Request(9, 3, spantest.BaseTime)
	evs[2].Err = probes.ErrorValue{Failed: true, Type: "*errors.errorString", Message: "classifier down"}
	pipe := replay(t, cfg, nil, evs)

	spans := rcv.Spans()
	if len(spans) != 2 {
		t.Fatalf("received %d spans, want 2", len(spans))
	}
	byName := map[string]otlptest.Span{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	root, child := byName["semantic_router.request.received"], byName["semantic_router.classification"]
	if root.Span == nil || child.Span == nil {
		t.Fatalf("span names: %v", spans)
	}
	tr := spantest.TraceID(3)
	if root.TraceIDHex() != hex.EncodeToString(tr[:]) || child.TraceIDHex() != root.TraceIDHex() {
		t.Errorf("trace ids %s %s", root.TraceIDHex(), child.TraceIDHex())
	}
	rs, cs := spantest.SpanID(3), spantest.SpanID(103)
	if root.SpanIDHex() != hex.EncodeToString(rs[:]) || child.SpanIDHex() != hex.EncodeToString(cs[:]) {
		t.Errorf("span ids %s %s", root.SpanIDHex(), child.SpanIDHex())
	}
	if root.ParentIDHex() != "" || child.ParentIDHex() != root.SpanIDHex() {
		t.Errorf("parents: root %q child %q", root.ParentIDHex(), child.ParentIDHex())
	}
	if root.StartTimeUnixNano != uint64(spantest.BaseTime.UnixNano()) || root.EndTimeUnixNano != uint64(spantest.BaseTime.Add(50*time.Millisecond).UnixNano()) {
		t.Errorf("root times %d..%d", root.StartTimeUnixNano, root.EndTimeUnixNano)
	}
	if child.StartTimeUnixNano != uint64(spantest.BaseTime.Add(time.Millisecond).UnixNano()) ||
		child.EndTimeUnixNano != uint64(spantest.BaseTime.Add(46900*time.Microsecond).UnixNano()) {
		t.Errorf("child times %d..%d", child.StartTimeUnixNano, child.EndTimeUnixNano)
	}
	if root.Kind != tracepb.Span_SPAN_KIND_SERVER || child.Kind != tracepb.Span_SPAN_KIND_INTERNAL {
		t.Errorf("kinds %v %v", root.Kind, child.Kind)
	}
	if child.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || child.Status.GetMessage() != "classifier down" {
		t.Errorf("child status %v", child.Status)
	}
	if root.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET {
		t.Errorf("root status %v", root.Status)
	}
	checks := map[string]func(otlptest.Span) bool{
		"category.name":          func(s otlptest.Span) bool { v, _ := s.Attr("category.name"); return v.GetStringValue() == "math" },
		"classification.time_ms": func(s otlptest.Span) bool { v, _ := s.Attr("classification.time_ms"); return v.GetIntValue() == 45 },
		"error":                  func(s otlptest.Span) bool { v, _ := s.Attr("error"); return v.GetBoolValue() },
		"error.type": func(s otlptest.Span) bool {
			v, _ := s.Attr("error.type")
			return v.GetStringValue() == "*errors.errorString"
		},
		"pii.types": func(s otlptest.Span) bool {
			v, _ := s.Attr("pii.types")
			a := v.GetArrayValue().GetValues()
			return len(a) == 2 && a[0].GetStringValue() == "email" && a[1].GetStringValue() == "phone"
		},
		"classification.confidence": func(s otlptest.Span) bool {
			v, _ := s.Attr("classification.confidence")
			return v.GetDoubleValue() == 0.93
		},
	}
	for k, ok := range checks {
		if !ok(child) {
			v, _ := child.Attr(k)
			t.Errorf("child attribute %s = %v", k, v)
		}
	}
	for k, want := range map[string]string{
		"service.name": "vllm-semantic-router", "service.version": "v0.1.0",
		"deployment.environment.name": "production", "deployment.environment": "production",
		"telemetry.sdk.language": "go",
	} {
		if v, _ := root.ResourceAttr(k); v.GetStringValue() != want {
			t.Errorf("resource %s = %v, want %q", k, v, want)
		}
	}
	if root.Scope.GetName() != instrumentationName || root.Scope.GetVersion() != Version {
		t.Errorf("scope %v", root.Scope)
	}
	hdrs := rcv.Headers()
	if len(hdrs) == 0 || len(hdrs[0].Get("authorization")) != 1 || hdrs[0].Get("authorization")[0] != "Bearer t0ken" {
		t.Errorf("headers %v", hdrs)
	}
	if st := pipe.Stats(); st.Ended != 2 || st.Exported != 2 || st.Failed != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestExportOTLPWithTLS(t *testing.T) {
	cert, caPEM, err := otlptest.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	rcv := otlptest.StartT(t, otlptest.WithTLS(cert))
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := spantest.OTLPConfig(rcv.Endpoint())
	cfg.Tracing.Exporter.Insecure = false
	cfg.Tracing.Exporter.CAFile = caFile
	replay(t, cfg, nil, spantest.Request(1, 1, spantest.BaseTime))
	if n := len(rcv.Spans()); n != 2 {
		t.Fatalf("received %d spans over TLS, want 2", n)
	}

	// A CA that did not sign the server's certificate: the handshake fails
	// and nothing arrives.
	_, otherPEM, err := otlptest.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, otherPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Tracing.Exporter.Timeout = 500 * time.Millisecond
	pipe := replay(t, cfg, nil, spantest.Request(1, 2, spantest.BaseTime))
	if n := len(rcv.Spans()); n != 2 || pipe.Stats().Failed != 2 {
		t.Fatalf("untrusted server: received %d, stats %+v", n, pipe.Stats())
	}
}

func TestExporterConfigErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := NewExporter(ctx, config.Exporter{Type: "zipkin"}, io.Discard); !errors.Is(err, config.ErrConfig) {
		t.Errorf("unknown type: %v", err)
	}
	if _, err := NewExporter(ctx, config.Exporter{Type: config.ExporterOTLP, Endpoint: "x:1", CAFile: "/nonexistent/ca.pem"}, io.Discard); err == nil {
		t.Error("missing CA file accepted")
	}
	bad := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(bad, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewExporter(ctx, config.Exporter{Type: config.ExporterOTLP, Endpoint: "x:1", CAFile: bad}, io.Discard); !errors.Is(err, config.ErrConfig) {
		t.Errorf("CA file without PEM: %v", err)
	}
}

// stdoutSpan is the part of stdouttrace's JSON the guide shows.
type stdoutSpan struct {
	Name        string
	SpanContext struct{ TraceID, SpanID string }
	Parent      struct{ SpanID string }
	SpanKind    int
	StartTime   time.Time
	EndTime     time.Time
	Attributes  []struct {
		Key   string
		Value struct {
			Type  string
			Value any
		}
	}
	Status   struct{ Code, Description string }
	Resource []struct{ Key string }
}

func TestStdoutExporterJSON(t *testing.T) {
	var buf bytes.Buffer
	cfg := config.DefaultConfig()
	exp, err := NewExporter(context.Background(), cfg.Tracing.Exporter, &buf)
	if err != nil {
		t.Fatal(err)
	}
	replay(t, cfg, exp, spantest.Request(1, 4, spantest.BaseTime))
	dec := json.NewDecoder(&buf)
	var spans []stdoutSpan
	for dec.More() {
		var s stdoutSpan
		if err := dec.Decode(&s); err != nil {
			t.Fatalf("stdout output is not a JSON stream: %v\n%s", err, buf.String())
		}
		spans = append(spans, s)
	}
	if len(spans) != 2 {
		t.Fatalf("got %d JSON spans, want 2", len(spans))
	}
	child := spans[0]
	tr, cs, rs := spantest.TraceID(4), spantest.SpanID(104), spantest.SpanID(4)
	if child.Name != "semantic_router.classification" || child.SpanContext.TraceID != hex.EncodeToString(tr[:]) ||
		child.SpanContext.SpanID != hex.EncodeToString(cs[:]) || child.Parent.SpanID != hex.EncodeToString(rs[:]) {
		t.Errorf("span %+v", child)
	}
	if !child.StartTime.Equal(spantest.BaseTime.Add(time.Millisecond)) || !child.EndTime.Equal(spantest.BaseTime.Add(46900*time.Microsecond)) {
		t.Errorf("times %v..%v", child.StartTime, child.EndTime)
	}
	var found bool
	for _, a := range child.Attributes {
		if a.Key == "classification.time_ms" {
			found = a.Value.Type == "INT64" && a.Value.Value == float64(45)
		}
	}
	if !found {
		t.Errorf("classification.time_ms missing or not INT64 45: %+v", child.Attributes)
	}
	if len(child.Resource) == 0 {
		t.Errorf("no resource in stdout output")
	}
}

func TestUnsampledRootIsNotExported(t *testing.T) {
	var buf bytes.Buffer
	cfg := config.DefaultConfig()
	exp, _ := NewExporter(context.Background(), cfg.Tracing.Exporter, &buf)
	evs := spantest.Request(1, 5, spantest.BaseTime)
	for i := range evs {
		evs[i].Sampled = false
	}
	replay(t, cfg, exp, evs)
	if buf.Len() != 0 {
		t.Fatalf("unsampled trace exported:\n%s", buf.String())
	}
}

// blockingExporter holds every export until released, like a stalled
// collector.
type blockingExporter struct {
	release chan struct{}
	mu      sync.Mutex
	got     int
}

func (b *blockingExporter) ExportSpans(ctx context.Context, s []sdktrace.ReadOnlySpan) error {
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	b.mu.Lock()
	b.got += len(s)
	b.mu.Unlock()
	return nil
}

func (b *blockingExporter) Shutdown(context.Context) error { return nil }

func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	cfg := config.DefaultConfig()
	cfg.Agent.Export = config.ExportSettings{QueueSize: 2, MaxBatchSize: 1, BatchTimeout: time.Millisecond, ShutdownTimeout: 10 * time.Second}
	exp := &blockingExporter{release: make(chan struct{})}
	pipe, err := NewPipeline(cfg, exp, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := spans.NewAssembler(pipe.Emit, time.Hour)
	// With the exporter stalled, this loop only finishes if Emit never
	// blocks on the full queue.
	const requests = 50
	for i := 0; i < requests; i++ {
		for _, ev := range spantest.Request(1, byte(i), spantest.BaseTime) {
			a.Handle(ev)
		}
	}
	close(exp.release)
	if err := pipe.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := pipe.Stats()
	if st.Ended != 2*requests || st.Dropped == 0 || st.Exported+st.Dropped != 2*requests || int(st.Exported) != exp.got {
		t.Fatalf("stats %+v, exporter got %d", st, exp.got)
	}
}

func TestUnreachableCollectorReportsErrors(t *testing.T) {
	// A port nothing listens on.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := lis.Addr().String()
	lis.Close()
	cfg := spantest.OTLPConfig(endpoint)
	cfg.Tracing.Exporter.Timeout = 300 * time.Millisecond
	exp, err := NewExporter(context.Background(), cfg.Tracing.Exporter, io.Discard)
	if err != nil {
		t.Fatalf("an unreachable collector must not fail start-up: %v", err)
	}
	var mu sync.Mutex
	var reported []error
	pipe, err := NewPipeline(cfg, exp, func(err error, n int) {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, err)
	})
	if err != nil {
		t.Fatal(err)
	}
	a := spans.NewAssembler(pipe.Emit, time.Hour)
	for _, ev := range spantest.Request(1, 1, spantest.BaseTime) {
		a.Handle(ev)
	}
	if err := pipe.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reported) == 0 || pipe.Stats().Failed != 2 {
		t.Fatalf("reported %v stats %+v", reported, pipe.Stats())
	}
}

// TestExportOTLPHTTP sends spans with OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
// to an HTTP receiver that decodes the protobuf body.
func TestExportOTLPHTTP(t *testing.T) {
	var (
		mu    sync.Mutex
		names []string
		paths []string
		auth  []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req collectorpb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		mu.Lock()
		paths = append(paths, r.URL.Path)
		auth = append(auth, r.Header.Get("Authorization"))
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					names = append(names, s.Name)
				}
			}
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	defer srv.Close()

	cfg := config.DefaultConfig()
	env := map[string]string{
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
		"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL,
		"OTEL_EXPORTER_OTLP_HEADERS":  "authorization=Bearer%20h",
	}
	err := config.ApplyEnv(&cfg, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	pipe := replay(t, cfg, nil, spantest.Request(9, 3, spantest.BaseTime))
	mu.Lock()
	defer mu.Unlock()
	if len(names) != 2 {
		t.Fatalf("received spans %v, want 2", names)
	}
	if paths[0] != "/v1/traces" || auth[0] != "Bearer h" {
		t.Errorf("path %q authorization %q", paths[0], auth[0])
	}
	if st := pipe.Stats(); st.Exported != 2 || st.Failed != 0 {
		t.Errorf("stats %+v", st)
	}
}
