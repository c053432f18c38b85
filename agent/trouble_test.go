package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/routerscope/routerscope/agent/spans/spantest"
	"github.com/routerscope/routerscope/internal/otlptest"
	"github.com/routerscope/routerscope/internal/testenv"
)

// TestTroubleIsLoggedWhileRunning: returns without their entry, spans
// dropped on a full queue, and the cause of an unready /readyz are
// reported while the agent runs, not only in its last log line.
func TestTroubleIsLoggedWhileRunning(t *testing.T) {
	rcv := otlptest.StartT(t)
	rcv.Stall() // the collector takes the batch and never answers
	cfg := runConfig(rcv.Endpoint())
	cfg.Tracing.Exporter.Timeout = time.Hour
	cfg.Agent.Export.QueueSize, cfg.Agent.Export.MaxBatchSize = 4, 2
	src := newChanSource()
	ln := localListener(t)
	log, logs := observedLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := runAsync(ctx, cfg, func(context.Context, AttachRequest) (EventSource, error) { return src, nil }, log,
		WithMetricsListener(ln), withSweepInterval(10*time.Millisecond), madeUpTarget(t))

	// Three returns whose entries were lost.
	for i := range 3 {
		src.ch <- spantest.Request(4242, byte(i), time.Now())[2]
	}
	testenv.Eventually(t, "lost entries logged", func() bool {
		return logs.FilterMessageSnippet("returns without their entry").Len() > 0
	})
	// Far more spans than the queue holds, while the export is stuck.
	for i := range 40 {
		evs := spantest.Request(4242, byte(10+i), time.Now())
		for _, ev := range evs {
			src.ch <- ev
		}
	}
	testenv.Eventually(t, "drops logged", func() bool { return logs.FilterMessageSnippet("export queue full").Len() > 0 })
	e := logs.FilterMessageSnippet("export queue full").All()[0]
	if n, _ := e.ContextMap()[LogKeyDroppedNow].(uint64); n == 0 {
		t.Errorf("drop log without a count: %v", e.ContextMap())
	}
	rcv.Reject(status.Error(codes.PermissionDenied, "not allowed")) // not retried
	rcv.Resume()
	for _, ev := range spantest.Request(4242, 99, time.Now()) {
		src.ch <- ev
	}
	testenv.Eventually(t, "readyz names the export", func() bool {
		code, body := httpGet(t, "http://"+ln.Addr().String()+"/readyz")
		return code == 503 && strings.Contains(body, "the last export to "+rcv.Endpoint()+" failed")
	})
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}
