package e2e

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/routerscope/routerscope/internal/testenv"
	"github.com/routerscope/routerscope/probes"
)

// The built-in probes (runtime.newproc1, net/textproto and net/http
// internals, runtime.g's stack) are declared verified on Go 1.26 and 1.27
// (probes/gocontract.go). The rest of this package runs against a router
// built with this machine's Go; TestRouterGo127 runs the trees,
// propagation and hand-off tests again against a router built with Go 1.27
// (GOTOOLCHAIN=go1.27.3, fetched through the module proxy once).

// go127 is the toolchain of the second verified release.
const go127 = "go1.27.3"

// buildRouterWith builds cmd/router with the given toolchain into dir.
func buildRouterWith(t *testing.T, toolchain string) string {
	t.Helper()
	// GOTOOLCHAIN fetches the release through the Go module proxy once.
	return testenv.GoBuild(t, testenv.Build{Pkg: "./cmd/router", Out: filepath.Join(t.TempDir(), "router-"+toolchain),
		Dir: repoRoot(), Env: []string{"GOTOOLCHAIN=" + toolchain}})
}

var handOffOffRE = regexp.MustCompile(`goroutine hand-off off|propagation.*off_reason`)

// TestRouterGo127 runs the router's e2e trees, concurrency and trace
// context tests against a router built with Go 1.27, after checking that
// the agent attaches every built-in part to it (nothing turned off for
// the release).
func TestRouterGo127(t *testing.T) {
	testenv.RequireBPF(t, "the end-to-end eBPF test")
	router := buildRouterWith(t, go127)
	b, err := probes.OpenBinary(router)
	if err != nil {
		t.Fatal(err)
	}
	v, err := b.GoVersion()
	b.Close()
	if err != nil || v != go127 {
		t.Fatalf("router built with %q (%v), want %s", v, err, go127)
	}
	saved := bins.router
	bins.router = router
	t.Cleanup(func() { bins.router = saved })

	t.Run("attach", func(t *testing.T) {
		_, collector := pipeline(t)
		s := startBackends(t)
		s.attachAgent(t, agentConfig(t, collector))
		s.agent.waitFor(t, regexp.MustCompile(`"msg":"trace context propagation"`), 10*time.Second)
		out := s.agent.Output()
		if !strings.Contains(out, `"traceparent_extract":true`) || !strings.Contains(out, `"traceparent_inject":"sk_msg"`) {
			t.Errorf("propagation not fully on for the %s router:\n%s", go127, tail(out, 20))
		}
		if handOffOffRE.MatchString(out) {
			t.Errorf("a built-in part is off for the %s router:\n%s", go127, tail(out, 20))
		}
	})
	for name, test := range map[string]func(*testing.T){
		"GuideTraces":                  TestGuideTraces,
		"ConcurrentRequests":           TestConcurrentRequests,
		"TraceContextPropagation":      TestTraceContextPropagation,
		"TraceContextParentBased":      TestTraceContextParentBased,
		"TraceContextWarmConnection":   TestTraceContextWarmConnection,
		"TraceContextDuplicateHeaders": TestTraceContextDuplicateHeaders,
	} {
		t.Run(name, test)
	}
}
