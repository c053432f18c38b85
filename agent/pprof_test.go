package agent

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/agent/export"
	"github.com/routerscope/routerscope/agent/spans"
)

// TestPprofSwitch checks that the profiles are served only when switched
// on, next to the metrics either way.
func TestPprofSwitch(t *testing.T) {
	for _, on := range []bool{false, true} {
		pipe, err := export.NewPipeline(config.DefaultConfig(), tracetest.NewNoopExporter(), nil)
		if err != nil {
			t.Fatal(err)
		}
		met := newMetrics(spans.NewAssembler(pipe.Emit, time.Hour), pipe)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		stop := met.serveHTTP(ln, on)
		base := "http://" + ln.Addr().String()
		get := func(path string) (int, string) {
			resp, err := http.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(body)
		}
		if code, _ := get("/metrics"); code != http.StatusOK {
			t.Errorf("pprof %v: /metrics answered %d", on, code)
		}
		code, body := get("/debug/pprof/")
		switch {
		case on && (code != http.StatusOK || !strings.Contains(body, "goroutine")):
			t.Errorf("pprof on: /debug/pprof/ answered %d %.80q", code, body)
		case !on && code != http.StatusNotFound:
			t.Errorf("pprof off: /debug/pprof/ answered %d, want 404", code)
		}
		if code, _ := get("/debug/pprof/heap?debug=1"); on != (code == http.StatusOK) {
			t.Errorf("pprof %v: heap profile answered %d", on, code)
		}
		stop()
		_ = pipe.Shutdown(t.Context())
	}
}
