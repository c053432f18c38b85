package spans_test

import (
	"testing"
	"time"

	"github.com/routerscope/routerscope/agent/spans"
	"github.com/routerscope/routerscope/agent/spans/spantest"
	"github.com/routerscope/routerscope/probes"
)

// TestErrorTypeNamesTheSentinel: a wrapped error is named by the program's
// sentinel it was built around, not by *fmt.wrapError.
func TestErrorTypeNamesTheSentinel(t *testing.T) {
	var c spantest.Collector
	a := spans.NewAssembler(c.Emit, time.Hour)
	evs := spantest.Request(1, 1, spantest.BaseTime)
	evs[2].Err = probes.ErrorValue{Failed: true, Type: "*fmt.wrapError",
		Message: "upstream timed out: e1 gave no complete answer", Sentinel: "router.ErrUpstreamTimeout"}
	a.Handle(evs[1])
	a.Handle(evs[2])
	r := c.All()[0]
	m := spantest.AttrMap(r.Attributes)
	if m["error.type"].AsString() != "router.ErrUpstreamTimeout" || r.StatusMessage != "upstream timed out: e1 gave no complete answer" {
		t.Errorf("error.type %q status %q", m["error.type"].AsString(), r.StatusMessage)
	}
}

// failingRoot is a root probe whose failure is a bool with a message field,
// like the router's serveChat and its *Outcome.
func failingRoot() *probes.Resolved {
	p := spantest.RootProbe()
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
		{"reason", true, spantest.Str("upstream returned a server error: e1 answered 500"), "upstream returned a server error: e1 answered 500"},
		{"empty reason falls back", true, spantest.Str(""), "error"},
		{"missing reason falls back", true, probes.Value{Kind: probes.KindString, Missing: true}, "error"},
		{"not failed", false, spantest.Str("rejected: pii"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c spantest.Collector
			a := spans.NewAssembler(c.Emit, time.Hour)
			p := failingRoot()
			a.Handle(spantest.Entry(p, 1, spantest.TraceID(1), spantest.SpanID(1), [8]byte{}, spantest.BaseTime, spantest.Str("req-1")))
			a.Handle(spantest.Return(p, 1, spantest.TraceID(1), spantest.SpanID(1), [8]byte{}, spantest.BaseTime.Add(time.Millisecond), probes.ErrorValue{Failed: tc.failed}, tc.msg))
			r := c.All()[0]
			m := spantest.AttrMap(r.Attributes)
			if r.Failed != tc.failed || r.StatusMessage != tc.want || m["error"].AsBool() != tc.failed {
				t.Errorf("failed %v status %q attrs %v", r.Failed, r.StatusMessage, r.Attributes)
			}
			if _, ok := m["error.message"]; ok {
				t.Errorf("the message source became an attribute: %v", r.Attributes)
			}
		})
	}
}
