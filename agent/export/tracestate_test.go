package export

import (
	"context"
	"io"
	"testing"

	"github.com/routerscope/routerscope/agent/spans/spantest"
	"github.com/routerscope/routerscope/internal/otlptest"
)

// TestTraceStateOnRoot: the caller's tracestate reaches the exported root
// span (OTLP, encoded by the agent); an invalid one is dropped whole.
func TestTraceStateOnRoot(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
		{"Bad Key=1", ""},
		{"", ""},
	} {
		rcv := otlptest.StartT(t)
		cfg := spantest.OTLPConfig(rcv.Endpoint())
		exp, err := NewExporter(context.Background(), cfg.Tracing.Exporter, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		evs := spantest.Request(9, 3, spantest.BaseTime)
		caller := [8]byte{0xee, 7: 1}
		for i := range evs {
			if evs[i].Probe.Spec.Span == "semantic_router.request.received" {
				evs[i].ParentSpanID, evs[i].RemoteParent = caller, true
			}
		}
		evs[0].TraceState = tc.in
		replay(t, cfg, exp, evs)
		var got string
		for _, s := range rcv.Spans() {
			if s.Name == "semantic_router.request.received" {
				got = s.TraceState
			} else if s.TraceState != "" {
				// The kernel sends a root after its children: only the
				// root carries the caller's tracestate.
				t.Errorf("%q: child tracestate %q", tc.in, s.TraceState)
			}
		}
		if got != tc.want {
			t.Errorf("root tracestate %q, want %q", got, tc.want)
		}
	}
}
