package agent

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/routerscope/routerscope/probes"
)

// TestErrorTypeNamesTheSentinel: a wrapped error is named by the program's
// sentinel it was built around, not by *fmt.wrapError.
func TestErrorTypeNamesTheSentinel(t *testing.T) {
	var c collector
	a := NewAssembler(c.emit, time.Hour)
	evs := request(1, 1, baseTime)
	evs[2].Err = probes.ErrorValue{Failed: true, Type: "*fmt.wrapError",
		Message: "upstream timed out: e1 gave no complete answer", Sentinel: "router.ErrUpstreamTimeout"}
	a.Handle(evs[1])
	a.Handle(evs[2])
	r := c.all()[0]
	m := attrMap(r.Attributes)
	if m["error.type"].AsString() != "router.ErrUpstreamTimeout" || r.StatusMessage != "upstream timed out: e1 gave no complete answer" {
		t.Errorf("error.type %q status %q", m["error.type"].AsString(), r.StatusMessage)
	}
}

// failingRoot is a root probe whose failure is a bool with a message field,
// like the router's serveChat and its *Outcome.
func failingRoot() *probes.Resolved {
	p := rootProbe()
	p.Spec.Error = &probes.ErrorRule{From: "return:0.Failed", Message: "return:0.Error"}
	p.Error = &probes.Fetch{Attr: probes.AttrErrorRule, Kind: probes.KindBool, Size: 1}
	p.Return = []probes.Fetch{{Attr: probes.AttrErrorMessage, Kind: probes.KindString}}
	return p
}

func TestFailedRootCarriesTheReason(t *testing.T) {
	for _, tc := range []struct {
		name   string
		failed bool
		msg    probes.Value
		want   string
	}{
		{"reason", true, str("upstream returned a server error: e1 answered 500"), "upstream returned a server error: e1 answered 500"},
		{"empty reason falls back", true, str(""), "error"},
		{"missing reason falls back", true, probes.Value{Kind: probes.KindString, Missing: true}, "error"},
		{"not failed", false, str("rejected: pii"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c collector
			a := NewAssembler(c.emit, time.Hour)
			p := failingRoot()
			a.Handle(entry(p, 1, tid(1), sid(1), [8]byte{}, baseTime, str("req-1")))
			a.Handle(ret(p, 1, tid(1), sid(1), [8]byte{}, baseTime.Add(time.Millisecond), probes.ErrorValue{Failed: tc.failed}, tc.msg))
			r := c.all()[0]
			m := attrMap(r.Attributes)
			if r.Failed != tc.failed || r.StatusMessage != tc.want || m["error"].AsBool() != tc.failed {
				t.Errorf("failed %v status %q attrs %v", r.Failed, r.StatusMessage, r.Attributes)
			}
			if _, ok := m["error.message"]; ok {
				t.Errorf("the message source became an attribute: %v", r.Attributes)
			}
		})
	}
}

// TestTraceStateOnRoot: the caller's tracestate reaches the exported root
// span (OTLP, encoded by the agent); an invalid one is dropped whole.
func TestTraceStateOnRoot(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
		{"Bad Key=1", ""},
		{"", ""},
	} {
		rcv := startReceiver(t)
		cfg := otlpConfig(rcv.Endpoint())
		exp, err := NewExporter(context.Background(), cfg.Tracing.Exporter, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		evs := request(9, 3, baseTime)
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
