package export

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc/credentials"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/internal/readlimit"
)

// NewSpanPipeline builds the pipeline of the exporter the config names:
// stdout through the SDK's stdout exporter, writing pretty-printed JSON
// (one object per span, the guide's "Console Output") to w; otlp encoded
// straight from the span records and uploaded by the client NewTraceClient
// builds.
func NewSpanPipeline(ctx context.Context, cfg config.Config, w io.Writer, onExportError func(error, int)) (*Pipeline, error) {
	if cfg.Tracing.Exporter.Type == config.ExporterOTLP {
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
// the agent's OTLP connection is configured. gRPC, or HTTP with protobuf
// bodies when the protocol is http/protobuf; TLS unless insecure, the CA
// file when given, headers, and the per-export timeout within which the
// client retries. Connections are made lazily: an unreachable collector
// shows up as export errors, not as a start-up failure.
func NewTraceClient(e config.Exporter) (otlptrace.Client, error) {
	if e.Type != config.ExporterOTLP {
		return nil, fmt.Errorf("%w: observability.tracing.exporter.type: %q has no OTLP client", config.ErrConfig, e.Type)
	}
	if e.Protocol == config.ProtocolHTTPProtobuf {
		opts, err := otlpHTTPOptions(e)
		if err != nil {
			return nil, err
		}
		return otlptracehttp.NewClient(opts...), nil
	}
	opts, err := otlpOptions(e)
	if err != nil {
		return nil, err
	}
	return otlptracegrpc.NewClient(opts...), nil
}

// NewExporter builds the SDK span exporter the config names (for
// NewPipeline): stdout writes pretty-printed JSON to w; otlp wraps the
// client of NewTraceClient in the SDK's OTLP exporter; none discards.
func NewExporter(ctx context.Context, e config.Exporter, w io.Writer) (sdktrace.SpanExporter, error) {
	switch e.Type {
	case config.ExporterStdout:
		if e.Format == config.StdoutFormatGuide {
			return newGuideExporter(w), nil
		}
		exp, err := stdouttrace.New(stdouttrace.WithWriter(w), stdouttrace.WithPrettyPrint())
		if err != nil {
			return nil, fmt.Errorf("create stdout exporter: %w", err)
		}
		return exp, nil
	case config.ExporterNone:
		return noneExporter{}, nil
	case config.ExporterOTLP:
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
	return nil, fmt.Errorf("%w: observability.tracing.exporter.type: unknown exporter type %q, allowed: %s", config.ErrConfig, e.Type, strings.Join(config.ExporterTypes(), ", "))
}

// exporterTLS is the TLS configuration of a secure exporter: the CA file's
// roots when given, else the system's.
func exporterTLS(e config.Exporter) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if e.CAFile == "" {
		return cfg, nil
	}
	pem, err := readlimit.File(e.CAFile, config.MaxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: read observability.tracing.exporter.ca_file: %w", config.ErrConfig, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: observability.tracing.exporter.ca_file %s: no PEM certificate in it", config.ErrConfig, e.CAFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// noneExporter is the none exporter: nothing is attached with it (see
// SampleRatio), and whatever reaches it is dropped.
type noneExporter struct{}

func (noneExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (noneExporter) Shutdown(context.Context) error                             { return nil }

// otlpOptionSet names one OTLP client package's option constructors, so
// that buildOTLPOptions configures gRPC and HTTP from the same steps.
type otlpOptionSet[O any] struct {
	endpointURL func(string) O
	endpoint    func(string) O
	insecure    func() O
	tls         func(*tls.Config) O
	headers     func(map[string]string) O
	timeout     func(time.Duration) O
}

// buildOTLPOptions turns the exporter config into one client's options:
// the endpoint (a URL when it has a scheme, else host:port), plaintext
// when insecure, else TLS with the CA file's roots or the system's (the
// guide's "insecure: false # Use TLS"), headers and the per-export
// timeout.
func buildOTLPOptions[O any](e config.Exporter, set otlpOptionSet[O]) ([]O, error) {
	var opts []O
	if strings.Contains(e.Endpoint, "://") {
		opts = append(opts, set.endpointURL(e.Endpoint))
	} else {
		opts = append(opts, set.endpoint(e.Endpoint))
	}
	if e.Insecure {
		opts = append(opts, set.insecure())
	} else {
		tlsCfg, err := exporterTLS(e)
		if err != nil {
			return nil, err
		}
		opts = append(opts, set.tls(tlsCfg))
	}
	if len(e.Headers) > 0 {
		opts = append(opts, set.headers(e.Headers))
	}
	if e.Timeout > 0 {
		opts = append(opts, set.timeout(e.Timeout))
	}
	return opts, nil
}

// otlpHTTPOptions are the OTLP/HTTP (protobuf) client's options. Its
// client connects per request, so an unreachable collector shows up as
// export errors, as with gRPC.
func otlpHTTPOptions(e config.Exporter) ([]otlptracehttp.Option, error) {
	return buildOTLPOptions(e, otlpOptionSet[otlptracehttp.Option]{
		endpointURL: otlptracehttp.WithEndpointURL,
		endpoint:    otlptracehttp.WithEndpoint,
		insecure:    otlptracehttp.WithInsecure,
		tls:         otlptracehttp.WithTLSClientConfig,
		headers:     otlptracehttp.WithHeaders,
		timeout:     otlptracehttp.WithTimeout,
	})
}

// otlpOptions are the OTLP/gRPC client's options, with the bounded
// reconnect backoff of reconnectOptions.
func otlpOptions(e config.Exporter) ([]otlptracegrpc.Option, error) {
	opts, err := buildOTLPOptions(e, otlpOptionSet[otlptracegrpc.Option]{
		endpointURL: otlptracegrpc.WithEndpointURL,
		endpoint:    otlptracegrpc.WithEndpoint,
		insecure:    otlptracegrpc.WithInsecure,
		tls: func(c *tls.Config) otlptracegrpc.Option {
			return otlptracegrpc.WithTLSCredentials(credentials.NewTLS(c))
		},
		headers: otlptracegrpc.WithHeaders,
		timeout: otlptracegrpc.WithTimeout,
	})
	if err != nil {
		return nil, err
	}
	return append(opts, reconnectOptions(e.ReconnectBackoff)...), nil
}
