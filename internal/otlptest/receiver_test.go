package otlptest

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func request(names ...string) *collectorpb.ExportTraceServiceRequest {
	var spans []*tracepb.Span
	for i, n := range names {
		spans = append(spans, &tracepb.Span{Name: n, TraceId: []byte{15: 1}, SpanId: []byte{7: byte(i + 1)},
			Attributes: []*commonpb.KeyValue{{Key: "k", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: n}}}}})
	}
	return &collectorpb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name",
			Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "svc"}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}},
	}}}
}

func dial(t *testing.T, r *Receiver, creds credentials.TransportCredentials) collectorpb.TraceServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(r.Endpoint(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return collectorpb.NewTraceServiceClient(conn)
}

func TestReceiverCollectsAndWaits(t *testing.T) {
	r, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	client := dial(t, r, insecure.NewCredentials())
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-token", "abc")

	got := make(chan []Span, 1)
	go func() {
		wctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		spans, _ := r.WaitForSpans(wctx, 3)
		got <- spans
	}()
	if _, err := client.Export(ctx, request("a", "b")); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Export(ctx, request("c")); err != nil {
		t.Fatal(err)
	}
	spans := <-got
	if len(spans) != 3 || spans[0].Name != "a" || spans[2].Name != "c" {
		t.Fatalf("spans %v", spans)
	}
	if v, ok := spans[1].Attr("k"); !ok || v.GetStringValue() != "b" {
		t.Errorf("attr %v", v)
	}
	if v, ok := spans[0].ResourceAttr("service.name"); !ok || v.GetStringValue() != "svc" {
		t.Errorf("resource %v", v)
	}
	if spans[1].SpanIDHex() != "0000000000000002" || spans[0].TraceIDHex() != "00000000000000000000000000000001" || spans[0].ParentIDHex() != "" {
		t.Errorf("ids %s %s", spans[1].SpanIDHex(), spans[0].TraceIDHex())
	}
	if h := r.Headers(); len(h) != 2 || h[0].Get("x-token")[0] != "abc" {
		t.Errorf("headers %v", h)
	}
	if len(r.ResourceSpans()) != 2 || r.Requests() != 2 {
		t.Errorf("resource spans %d requests %d", len(r.ResourceSpans()), r.Requests())
	}

	// Waiting for more than arrives ends with the count.
	wctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if spans, err := r.WaitForSpans(wctx, 4); err == nil || len(spans) != 3 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait for 4: %d spans, %v", len(spans), err)
	}
}

func TestReceiverRejectAndStall(t *testing.T) {
	r, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	client := dial(t, r, insecure.NewCredentials())
	r.Reject(errors.New("quota exceeded"))
	_, err = client.Export(context.Background(), request("a"))
	if status.Code(err) != codes.Unavailable || len(r.Spans()) != 0 || r.Requests() != 1 {
		t.Fatalf("reject: %v, %d spans", err, len(r.Spans()))
	}
	r.Reject(nil)
	r.Stall()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := client.Export(ctx, request("b")); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("stalled export: %v", err)
	}
	r.Resume()
	if _, err := client.Export(context.Background(), request("c")); err != nil {
		t.Fatalf("after resume: %v", err)
	}
	// The stalled call may still land if Resume beats the client's
	// cancellation to the server; "c" must be there either way.
	spans := r.Spans()
	if len(spans) == 0 || spans[len(spans)-1].Name != "c" {
		t.Fatalf("after resume: %v", spans)
	}
}

func TestReceiverTLS(t *testing.T) {
	cert, caPEM, err := SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Start(WithTLS(cert))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := dial(t, r, credentials.NewClientTLSFromCert(pool, ""))
	if _, err := client.Export(context.Background(), request("tls")); err != nil || len(r.Spans()) != 1 {
		t.Fatalf("TLS export: %v", err)
	}
	plain := dial(t, r, insecure.NewCredentials())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := plain.Export(ctx, request("plain")); err == nil {
		t.Fatal("plaintext export to a TLS receiver succeeded")
	}
}
