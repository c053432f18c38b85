package export

import (
	"context"
	"io"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/internal/otlptest"
)

// resumeAfterOutage exports one span every 100 ms (as a busy agent
// would), closes the receiver for outage, starts it again on the same
// address, and returns how long after that the first export succeeded.
func resumeAfterOutage(t *testing.T, backoff, outage time.Duration) time.Duration {
	t.Helper()
	rcv, err := otlptest.Start()
	if err != nil {
		t.Fatal(err)
	}
	addr := rcv.Endpoint()
	e := config.Exporter{Type: config.ExporterOTLP, Endpoint: addr, Insecure: true, Timeout: 10 * time.Second, ReconnectBackoff: backoff}
	exp, err := NewExporter(context.Background(), e, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer exp.Shutdown(context.Background())
	span := []sdktrace.ReadOnlySpan{tracetest.SpanStub{Name: "probe"}.Snapshot()}
	if err := exp.ExportSpans(context.Background(), span); err != nil {
		t.Fatalf("export before the outage: %v", err)
	}
	rcv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ok := make(chan time.Time, 64)
	go func() {
		for ctx.Err() == nil {
			go func() {
				if exp.ExportSpans(ctx, span) == nil {
					select {
					case ok <- time.Now():
					default:
					}
				}
			}()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	time.Sleep(outage)
	for len(ok) > 0 {
		<-ok
	}
	back, err := otlptest.Start(otlptest.WithAddress(addr))
	if err != nil {
		t.Fatalf("restart the receiver on %s: %v", addr, err)
	}
	defer back.Close()
	up := time.Now()
	select {
	case at := <-ok:
		return at.Sub(up)
	case <-time.After(3 * time.Minute):
		t.Fatal("export never resumed")
	}
	return 0
}

// TestExportResumesWithinReconnectBackoff: after an outage long enough
// for gRPC's default backoff to grow past 10 s, export resumes within the
// configured ceiling (plus jitter and a second of slack for a loaded
// machine), not at gRPC's next scheduled attempt.
func TestExportResumesWithinReconnectBackoff(t *testing.T) {
	if testing.Short() {
		t.Skip("an outage of 20 s")
	}
	const backoff = time.Second
	got := resumeAfterOutage(t, backoff, 20*time.Second)
	t.Logf("export resumed %v after the collector came back (reconnect_backoff %v, outage 20s)", got.Round(time.Millisecond), backoff)
	if limit := backoff*6/5 + time.Second; got > limit {
		t.Errorf("export resumed %v after the collector came back, want within %v", got, limit)
	}
}

func TestReconnectBackoffConfig(t *testing.T) {
	doc := func(v string) []byte {
		return []byte("observability:\n  tracing:\n    enabled: true\n    provider: opentelemetry\n    exporter:\n      type: otlp\n      endpoint: localhost:4317\n      reconnect_backoff: " + v + "\n")
	}
	cfg, err := config.Parse(doc(`"2s"`))
	if err != nil || cfg.Tracing.Exporter.ReconnectBackoff != 2*time.Second {
		t.Fatalf("2s: %v, %v", cfg.Tracing.Exporter.ReconnectBackoff, err)
	}
	if cfg := config.DefaultConfig(); cfg.Tracing.Exporter.ReconnectBackoff != config.DefaultReconnectBackoff {
		t.Errorf("default %v", cfg.Tracing.Exporter.ReconnectBackoff)
	}
	for _, bad := range []string{`"10ms"`, `"10m"`, `"-1s"`} {
		if _, err := config.Parse(doc(bad)); err == nil {
			t.Errorf("reconnect_backoff %s accepted", bad)
		}
	}
}
