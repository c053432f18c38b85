package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc/credentials"
)

// NewSpanPipeline builds the pipeline of the exporter the config names:
// stdout through the SDK's stdout exporter, writing pretty-printed JSON
// (one object per span, the guide's "Console Output") to w; otlp encoded
// straight from the span records and uploaded by the client NewTraceClient
// builds.
func NewSpanPipeline(ctx context.Context, cfg Config, w io.Writer, onExportError func(error, int)) (*Pipeline, error) {
	if cfg.Tracing.Exporter.Type == ExporterOTLP {
		client, err := NewTraceClient(cfg.Tracing.Exporter)
		if err != nil {
			return nil, err
		}
		return NewOTLPPipeline(ctx, cfg, client, onExportError)
	}
	exp, err := NewExporter(ctx, cfg.Tracing.Exporter, w)
	if err != nil {
		return nil, err
	}
	pipe, err := NewPipeline(cfg, exp, onExportError)
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, err
	}
	return pipe, nil
}

// NewTraceClient builds the OTLP client the config names: the one place
// the agent's OTLP connection is configured (endpoint, TLS unless
// insecure, the CA file when given, headers, and the per-export timeout
// within which the client retries). The gRPC connection is made lazily:
// an unreachable collector shows up as export errors, not as a start-up
// failure.
func NewTraceClient(e Exporter) (otlptrace.Client, error) {
	if e.Type != ExporterOTLP {
		return nil, fmt.Errorf("%w: observability.tracing.exporter.type: %q has no OTLP client", ErrConfig, e.Type)
	}
	opts, err := otlpOptions(e)
	if err != nil {
		return nil, err
	}
	return otlptracegrpc.NewClient(opts...), nil
}

// NewExporter builds the SDK span exporter the config names (for
// NewPipeline): stdout writes pretty-printed JSON to w; otlp wraps the
// client of NewTraceClient in the SDK's OTLP exporter.
func NewExporter(ctx context.Context, e Exporter, w io.Writer) (sdktrace.SpanExporter, error) {
	switch e.Type {
	case ExporterStdout:
		exp, err := stdouttrace.New(stdouttrace.WithWriter(w), stdouttrace.WithPrettyPrint())
		if err != nil {
			return nil, fmt.Errorf("create stdout exporter: %w", err)
		}
		return exp, nil
	case ExporterOTLP:
		client, err := NewTraceClient(e)
		if err != nil {
			return nil, err
		}
		exp, err := otlptrace.New(ctx, client)
		if err != nil {
			return nil, fmt.Errorf("create OTLP exporter for %s: %w", e.Endpoint, err)
		}
		return exp, nil
	}
	return nil, fmt.Errorf("%w: observability.tracing.exporter.type: unknown exporter type %q, allowed: %s", ErrConfig, e.Type, list(exporterTypes))
}

func otlpOptions(e Exporter) ([]otlptracegrpc.Option, error) {
	var opts []otlptracegrpc.Option
	if strings.Contains(e.Endpoint, "://") {
		opts = append(opts, otlptracegrpc.WithEndpointURL(e.Endpoint))
	} else {
		opts = append(opts, otlptracegrpc.WithEndpoint(e.Endpoint))
	}
	switch {
	case e.Insecure:
		opts = append(opts, otlptracegrpc.WithInsecure())
	case e.CAFile != "":
		pem, err := os.ReadFile(e.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read observability.tracing.exporter.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: observability.tracing.exporter.ca_file %s: no PEM certificate in it", ErrConfig, e.CAFile)
		}
		opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))
	default:
		// TLS with the system's roots: the guide's "insecure: false # Use TLS".
		opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})))
	}
	if len(e.Headers) > 0 {
		opts = append(opts, otlptracegrpc.WithHeaders(e.Headers))
	}
	if e.Timeout > 0 {
		opts = append(opts, otlptracegrpc.WithTimeout(e.Timeout))
	}
	return opts, nil
}

// errorThrottle reports export errors at most once per interval, counting
// the ones in between, so an unreachable collector yields one clear log
// line every interval instead of one per batch.
type errorThrottle struct {
	interval time.Duration
	now      func() time.Time
	report   func(err error, failedSpans int, suppressed int)

	mu          sync.Mutex
	last        time.Time
	suppressed  int
	spansHidden int
}

func newErrorThrottle(interval time.Duration, report func(err error, failedSpans, suppressed int)) *errorThrottle {
	return &errorThrottle{interval: interval, now: time.Now, report: report}
}

// observe records one failed export of n spans and reports it unless one
// was reported within the interval.
func (t *errorThrottle) observe(err error, n int) {
	t.mu.Lock()
	now := t.now()
	if !t.last.IsZero() && now.Sub(t.last) < t.interval {
		t.suppressed++
		t.spansHidden += n
		t.mu.Unlock()
		return
	}
	t.last = now
	suppressed, hidden := t.suppressed, t.spansHidden
	t.suppressed, t.spansHidden = 0, 0
	t.mu.Unlock()
	t.report(err, n+hidden, suppressed)
}

// exportContext bounds a shutdown flush.
func exportContext(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(parent), d)
}
