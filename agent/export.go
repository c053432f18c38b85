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

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc/credentials"
)

// NewExporter builds the span exporter the config names: stdout writes
// pretty-printed JSON (one object per span, the guide's "Console Output")
// to w; otlp sends OTLP over gRPC (or HTTP with protobuf bodies, when the
// protocol is http/protobuf), with TLS unless insecure, the CA file when
// given, headers, and the per-export timeout within which the SDK retries;
// none discards.
func NewExporter(ctx context.Context, e Exporter, w io.Writer) (sdktrace.SpanExporter, error) {
	switch e.Type {
	case ExporterStdout:
		if e.Format == StdoutFormatGuide {
			return newGuideExporter(w), nil
		}
		exp, err := stdouttrace.New(stdouttrace.WithWriter(w), stdouttrace.WithPrettyPrint())
		if err != nil {
			return nil, fmt.Errorf("create stdout exporter: %w", err)
		}
		return exp, nil
	case ExporterNone:
		return noneExporter{}, nil
	case ExporterOTLP:
		if e.Protocol == ProtocolHTTPProtobuf {
			return newHTTPExporter(ctx, e)
		}
		opts, err := otlpOptions(e)
		if err != nil {
			return nil, err
		}
		// The gRPC connection is made lazily: an unreachable collector
		// shows up as export errors, not as a start-up failure.
		exp, err := otlptracegrpc.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("create OTLP exporter for %s: %w", e.Endpoint, err)
		}
		return exp, nil
	}
	return nil, fmt.Errorf("%w: observability.tracing.exporter.type: unknown exporter type %q, allowed: %s", ErrConfig, e.Type, list(exporterTypes))
}

// newHTTPExporter builds the OTLP/HTTP (protobuf) exporter. Its client
// connects per request, so an unreachable collector shows up as export
// errors, as with gRPC.
func newHTTPExporter(ctx context.Context, e Exporter) (sdktrace.SpanExporter, error) {
	var opts []otlptracehttp.Option
	if strings.Contains(e.Endpoint, "://") {
		opts = append(opts, otlptracehttp.WithEndpointURL(e.Endpoint))
	} else {
		opts = append(opts, otlptracehttp.WithEndpoint(e.Endpoint))
	}
	tlsCfg, err := exporterTLS(e)
	if err != nil {
		return nil, err
	}
	if e.Insecure {
		opts = append(opts, otlptracehttp.WithInsecure())
	} else {
		opts = append(opts, otlptracehttp.WithTLSClientConfig(tlsCfg))
	}
	if len(e.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(e.Headers))
	}
	if e.Timeout > 0 {
		opts = append(opts, otlptracehttp.WithTimeout(e.Timeout))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("create OTLP/HTTP exporter for %s: %w", e.Endpoint, err)
	}
	return exp, nil
}

// exporterTLS is the TLS configuration of a secure exporter: the CA file's
// roots when given, else the system's.
func exporterTLS(e Exporter) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if e.CAFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(e.CAFile)
	if err != nil {
		return nil, fmt.Errorf("read observability.tracing.exporter.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: observability.tracing.exporter.ca_file %s: no PEM certificate in it", ErrConfig, e.CAFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// noneExporter is the none exporter: nothing is attached with it (see
// SampleRatio), and whatever reaches it is dropped.
type noneExporter struct{}

func (noneExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (noneExporter) Shutdown(context.Context) error                             { return nil }

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
	default:
		// TLS with the CA file's roots, else the system's: the guide's
		// "insecure: false # Use TLS".
		tlsCfg, err := exporterTLS(e)
		if err != nil {
			return nil, err
		}
		opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(tlsCfg)))
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
