package otlptest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	// Registers the gzip codec: collectors compress OTLP exports by default.
	_ "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Span is one received span with the resource and scope it came under.
type Span struct {
	Resource *resourcepb.Resource
	Scope    *commonpb.InstrumentationScope
	*tracepb.Span
}

// TraceIDHex is the span's trace id in lowercase hex.
func (s Span) TraceIDHex() string { return hex.EncodeToString(s.TraceId) }

// SpanIDHex is the span's id in lowercase hex.
func (s Span) SpanIDHex() string { return hex.EncodeToString(s.SpanId) }

// ParentIDHex is the parent span's id in lowercase hex ("" for a root).
func (s Span) ParentIDHex() string { return hex.EncodeToString(s.ParentSpanId) }

// Attr returns the span attribute key's value, and whether it is set.
func (s Span) Attr(key string) (*commonpb.AnyValue, bool) { return findAttr(s.Attributes, key) }

// ResourceAttr returns the resource attribute key's value, and whether it is
// set.
func (s Span) ResourceAttr(key string) (*commonpb.AnyValue, bool) {
	if s.Resource == nil {
		return nil, false
	}
	return findAttr(s.Resource.Attributes, key)
}

func findAttr(kvs []*commonpb.KeyValue, key string) (*commonpb.AnyValue, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// Option configures a Receiver.
type Option func(*Receiver)

// WithTLS serves with the given certificate instead of plaintext.
func WithTLS(cert tls.Certificate) Option {
	return func(r *Receiver) { r.cert = &cert }
}

// WithAddress listens on addr (host:port) instead of a free loopback port:
// a test restarts a receiver where a closed one was, as a collector
// coming back after an outage.
func WithAddress(addr string) Option {
	return func(r *Receiver) { r.addr = addr }
}

// Receiver is a running OTLP/gRPC trace receiver on a loopback port.
type Receiver struct {
	collectorpb.UnimplementedTraceServiceServer

	cert *tls.Certificate
	addr string
	lis  net.Listener
	srv  *grpc.Server
	done chan struct{}

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every Export
	resource []*tracepb.ResourceSpans
	headers  []metadata.MD
	reject   error
	stall    chan struct{} // non-nil: Export waits for it (or the caller's ctx)
	requests int
}

// Start listens on 127.0.0.1 on a free port (or WithAddress's) and serves
// until Close.
func Start(opts ...Option) (*Receiver, error) {
	r := &Receiver{addr: "127.0.0.1:0", changed: make(chan struct{}), done: make(chan struct{})}
	for _, o := range opts {
		o(r)
	}
	lis, err := net.Listen("tcp", r.addr)
	if err != nil {
		return nil, fmt.Errorf("listen for OTLP: %w", err)
	}
	var sopts []grpc.ServerOption
	if r.cert != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{*r.cert}, MinVersion: tls.VersionTLS12})))
	}
	r.lis = lis
	r.srv = grpc.NewServer(sopts...)
	collectorpb.RegisterTraceServiceServer(r.srv, r)
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(lis)
	}()
	return r, nil
}

// StartT starts a receiver for one test: a failure to start fails t, and
// the receiver is closed when the test ends.
func StartT(t testing.TB, opts ...Option) *Receiver {
	t.Helper()
	r, err := Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// Endpoint is the host:port to export to.
func (r *Receiver) Endpoint() string { return r.lis.Addr().String() }

// Close stops the server (releasing stalled calls) and waits for it.
func (r *Receiver) Close() {
	r.Resume()
	r.srv.Stop()
	<-r.done
}

// Reject makes every later Export fail with err (a gRPC status error when
// built with status.Error); nil accepts again.
func (r *Receiver) Reject(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reject = err
}

// Stall makes every later Export hang until Resume or the caller's
// deadline, like an overloaded collector.
func (r *Receiver) Stall() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stall == nil {
		r.stall = make(chan struct{})
	}
}

// Resume releases stalled and later Export calls.
func (r *Receiver) Resume() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stall != nil {
		close(r.stall)
		r.stall = nil
	}
}

// Export implements the collector's TraceService.
func (r *Receiver) Export(ctx context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	r.mu.Lock()
	stall := r.stall
	r.mu.Unlock()
	if stall != nil {
		select {
		case <-stall:
		case <-ctx.Done():
			return nil, status.Error(codes.DeadlineExceeded, "receiver stalled")
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	r.headers = append(r.headers, md)
	if r.reject != nil {
		if _, ok := status.FromError(r.reject); ok {
			return nil, r.reject
		}
		return nil, status.Error(codes.Unavailable, r.reject.Error())
	}
	r.resource = append(r.resource, req.ResourceSpans...)
	close(r.changed)
	r.changed = make(chan struct{})
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

// ResourceSpans returns everything received so far.
func (r *Receiver) ResourceSpans() []*tracepb.ResourceSpans {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.ResourceSpans(nil), r.resource...)
}

// Headers returns the gRPC metadata of every Export call so far.
func (r *Receiver) Headers() []metadata.MD {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]metadata.MD(nil), r.headers...)
}

// Requests is the number of Export calls, accepted or rejected.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// Spans returns every span received so far, flattened.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return flatten(r.resource)
}

func flatten(rss []*tracepb.ResourceSpans) []Span {
	var out []Span
	for _, rs := range rss {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				out = append(out, Span{Resource: rs.Resource, Scope: ss.Scope, Span: s})
			}
		}
	}
	return out
}

// WaitForSpans waits until at least n spans have arrived and returns all
// received, or returns an error naming how many came when ctx ends.
func (r *Receiver) WaitForSpans(ctx context.Context, n int) ([]Span, error) {
	for {
		r.mu.Lock()
		spans := flatten(r.resource)
		changed := r.changed
		r.mu.Unlock()
		if len(spans) >= n {
			return spans, nil
		}
		select {
		case <-ctx.Done():
			return spans, fmt.Errorf("wait for %d spans: got %d: %w", n, len(spans), ctx.Err())
		case <-changed:
		}
	}
}

// SelfSigned makes a certificate for 127.0.0.1 and localhost, valid for a
// day, and returns it with its PEM encoding (to write as a CA file).
func SelfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("generate key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "otlptest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("marshal key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("load key pair: %w", err)
	}
	return cert, certPEM, nil
}
