package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/routerscope/routerscope/internal/otlptest"
	"github.com/routerscope/routerscope/internal/testenv"
)

func TestReadinessAndAttachErrors(t *testing.T) {
	rcv := otlptest.StartT(t)
	dir := t.TempDir()
	routerPath := filepath.Join(dir, "bin", "router")
	cfg := discoveryConfig(t, rcv.Endpoint(), dir, routerPath)
	cfg.Agent.Discovery.RetryInterval = 20 * time.Millisecond
	// The SDK retries an unavailable collector within this timeout.
	cfg.Tracing.Exporter.Timeout = 300 * time.Millisecond
	engine := &capture{}
	refuse := make(chan bool, 1)
	refuse <- true
	engine.fail = func(AttachRequest) error {
		v := <-refuse
		refuse <- v
		if v {
			return fmt.Errorf("open executable: %w", os.ErrPermission)
		}
		return nil
	}
	ln := localListener(t)
	addr := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := runAsync(ctx, cfg, engine.attach, observedDiscard(), WithMetricsListener(ln))

	// Nothing matches yet: ready (nothing to trace is not a failure).
	testenv.Eventually(t, "ready with no target", func() bool { code, _ := httpGet(t, addr+"/readyz"); return code == http.StatusOK })
	if code, body := httpGet(t, addr+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz %d %q", code, body)
	}
	// A matching process the agent cannot attach: not ready, errors
	// counted by reason, retried.
	p := startCopy(t, routerPath)
	testenv.Eventually(t, "attach errors counted and retried", func() bool {
		return metricValue(scrape(t, addr[len("http://"):]), "routerscope_attach_errors_total", "reason=permission_denied") >= 2
	})
	if code, body := httpGet(t, addr+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not ready") {
		t.Fatalf("/readyz %d %q while the only target fails to attach", code, body)
	}
	// The cause is fixed: the retry attaches, ready again.
	<-refuse
	refuse <- false
	testenv.Eventually(t, "attached after retry", func() bool { return engine.attachedPIDs()[p.Process.Pid] == 1 })
	testenv.Eventually(t, "ready once attached", func() bool { code, _ := httpGet(t, addr+"/readyz"); return code == http.StatusOK })

	// The collector fails: not ready, export errors by reason.
	rcv.Reject(status.Error(codes.Unavailable, "collector down"))
	startCopy(t, routerPath) // its capture emits a request, whose export fails
	testenv.Eventually(t, "export failure seen", func() bool {
		return metricValue(scrape(t, addr[len("http://"):]), "routerscope_export_errors_total", "reason=unavailable") >= 1
	})
	testenv.Eventually(t, "not ready while export fails", func() bool {
		code, _ := httpGet(t, addr+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	// The server is gone with Run.
	if _, err := http.Get(addr + "/healthz"); err == nil {
		t.Fatal("metrics server still up after Run returned")
	}
}

func TestExportErrorReason(t *testing.T) {
	cases := map[error]string{
		context.DeadlineExceeded:                         "timeout",
		fmt.Errorf("export: %w", context.Canceled):       "canceled",
		status.Error(codes.Unavailable, "down"):          "unavailable",
		status.Error(codes.Unauthenticated, "no token"):  "unauthenticated",
		status.Error(codes.ResourceExhausted, "too big"): "resourceexhausted",
		errors.New("boom"):                               "other",
	}
	for err, want := range cases {
		if got := exportErrorReason(err); got != want {
			t.Errorf("%v: %q, want %q", err, got, want)
		}
	}
}

func TestTooManyProcesses(t *testing.T) {
	rcv := otlptest.StartT(t)
	dir := t.TempDir()
	routerPath := filepath.Join(dir, "bin", "router")
	cfg := discoveryConfig(t, rcv.Endpoint(), dir, routerPath)
	cfg.Agent.Discovery.MaxProcesses = 1
	cfg.Agent.Discovery.RetryInterval = time.Hour
	a := startCopy(t, routerPath)
	b := startCopy(t, routerPath)
	engine := &capture{}
	ln := localListener(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := runAsync(ctx, cfg, engine.attach, observedDiscard(), WithMetricsListener(ln))
	testenv.Eventually(t, "limit reached", func() bool {
		return metricValue(scrape(t, ln.Addr().String()), "routerscope_attach_errors_total", "reason="+reasonLimit) == 1
	})
	got := engine.attachedPIDs()
	if len(got) != 1 || got[a.Process.Pid]+got[b.Process.Pid] != 1 {
		t.Fatalf("attached %v with max_processes 1", got)
	}
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}
