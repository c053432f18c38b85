package spans_test

import (
	"testing"
	"time"

	"github.com/routerscope/routerscope/agent/spans"
	"github.com/routerscope/routerscope/agent/spans/spantest"
	"github.com/routerscope/routerscope/probes"
)

// statusProbe adds the status code its entry reads to its parent span.
func statusProbe() *probes.Resolved {
	return &probes.Resolved{
		ID: 2,
		Spec: probes.Probe{
			Symbol:     "net/http.(*response).WriteHeader",
			Span:       "http.server.status",
			Kind:       "internal",
			IntoParent: true,
			Attributes: []probes.Attribute{{Name: "http.response.status_code", From: "arg:code", Type: "int"}},
		},
		Entry:    []probes.Fetch{{Attr: 0, Kind: probes.KindInt, Size: 8}},
		ParentID: 0,
	}
}

func TestIntoParentMergesAttributes(t *testing.T) {
	var c spantest.Collector
	a := spans.NewAssembler(c.Emit, time.Minute)
	rp, sp := spantest.RootProbe(), statusProbe()
	tr, root := spantest.TraceID(1), spantest.SpanID(1)
	t0 := spantest.BaseTime
	a.Handle(spantest.Entry(rp, 7, tr, root, [8]byte{}, t0, spantest.Str("req-a")))
	for i, code := range []int64{100, 404} { // an informational code, then the final one
		child := spantest.SpanID(byte(50 + i))
		a.Handle(spantest.Entry(sp, 7, tr, child, root, t0.Add(time.Millisecond), spantest.Int(code)))
		a.Handle(spantest.Return(sp, 7, tr, child, root, t0.Add(2*time.Millisecond), probes.ErrorValue{}))
	}
	// A call outside any open parent (after the handler returned) is dropped.
	a.Handle(spantest.Return(rp, 7, tr, root, [8]byte{}, t0.Add(5*time.Millisecond), probes.ErrorValue{}))
	a.Handle(spantest.Entry(sp, 7, tr, spantest.SpanID(60), root, t0.Add(6*time.Millisecond), spantest.Int(200)))
	a.Handle(spantest.Return(sp, 7, tr, spantest.SpanID(60), root, t0.Add(7*time.Millisecond), probes.ErrorValue{}))

	recs := c.All()
	if len(recs) != 1 || recs[0].Name != "semantic_router.request.received" {
		t.Fatalf("want only the parent span, got %+v", recs)
	}
	// The latest value wins for a repeated key: the SDK keeps the last.
	var codes []int64
	for _, kv := range recs[0].Attributes {
		if kv.Key == "http.response.status_code" {
			codes = append(codes, kv.Value.AsInt64())
		}
	}
	if len(codes) != 2 || codes[1] != 404 {
		t.Errorf("status codes on the parent: %v, want [100 404]", codes)
	}
	if st := a.Stats(); st.Unmerged != 1 || st.Finished != 1 || a.Open() != 0 || a.Waiting() != 0 {
		t.Errorf("stats %+v open %d merged %d", st, a.Open(), a.Waiting())
	}
}

func TestIntoParentBounded(t *testing.T) {
	var c spantest.Collector
	a := spans.NewAssembler(c.Emit, time.Minute)
	rp, sp := spantest.RootProbe(), statusProbe()
	tr, root := spantest.TraceID(2), spantest.SpanID(2)
	a.Handle(spantest.Entry(rp, 7, tr, root, [8]byte{}, spantest.BaseTime, spantest.Str("req-b")))
	for i := range spans.MaxMergedAttributes + 10 {
		child := spantest.SpanID(byte(100 + i))
		a.Handle(spantest.Entry(sp, 7, tr, child, root, spantest.BaseTime, spantest.Int(int64(i))))
		a.Handle(spantest.Return(sp, 7, tr, child, root, spantest.BaseTime, probes.ErrorValue{}))
	}
	// The parent ends without its return (agent stop): merged attributes
	// still go out, and nothing stays behind.
	a.EndAll(spantest.BaseTime.Add(time.Second))
	recs := c.All()
	if len(recs) != 1 {
		t.Fatalf("spans %d", len(recs))
	}
	n := 0
	for _, kv := range recs[0].Attributes {
		if kv.Key == "http.response.status_code" {
			n++
		}
	}
	if n != spans.MaxMergedAttributes || a.Stats().Unmerged != 10 || a.Waiting() != 0 {
		t.Errorf("merged %d attributes (unmerged %d, left %d), want %d", n, a.Stats().Unmerged, a.Waiting(), spans.MaxMergedAttributes)
	}
}

// whole is a span as the capture engine sends it: one record at its end.
func whole(p *probes.Resolved, pid uint32, trace [16]byte, span, parent [8]byte, start, end time.Time, entryVals ...probes.Value) probes.Event {
	return probes.Event{Kind: probes.EventSpan, Probe: p, PID: pid, TID: pid, Start: start, Time: end,
		TraceID: trace, SpanID: span, ParentSpanID: parent, Sampled: true, EntryValues: entryVals}
}

func TestIntoParentWholeSpans(t *testing.T) {
	var c spantest.Collector
	a := spans.NewAssembler(c.Emit, time.Minute)
	rp, sp := spantest.RootProbe(), statusProbe()
	tr, root := spantest.TraceID(3), spantest.SpanID(3)
	t0 := spantest.BaseTime
	// The child's record comes first (it ends first), then the parent's.
	a.Handle(whole(sp, 7, tr, spantest.SpanID(70), root, t0.Add(time.Millisecond), t0.Add(2*time.Millisecond), spantest.Int(418)))
	// A call with no local parent is dropped at once.
	a.Handle(whole(sp, 7, tr, spantest.SpanID(71), [8]byte{}, t0, t0, spantest.Int(200)))
	// A call whose parent's record never comes waits, then expires.
	a.Handle(whole(sp, 7, tr, spantest.SpanID(72), spantest.SpanID(99), t0, t0, spantest.Int(500)))
	a.Handle(whole(rp, 7, tr, root, [8]byte{}, t0, t0.Add(3*time.Millisecond), spantest.Str("req-c")))
	recs := c.All()
	if len(recs) != 1 || recs[0].Name != "semantic_router.request.received" {
		t.Fatalf("want only the parent span, got %+v", recs)
	}
	if v := spantest.AttrMap(recs[0].Attributes)["http.response.status_code"]; v.AsInt64() != 418 {
		t.Errorf("status on the parent: %v", recs[0].Attributes)
	}
	if st := a.Stats(); st.Unmerged != 1 || a.Waiting() != 1 {
		t.Errorf("before expiry: stats %+v waiting %d", st, a.Waiting())
	}
	a.Expire(t0.Add(2 * time.Minute))
	if st := a.Stats(); st.Unmerged != 2 || a.Waiting() != 0 || a.PendingMerges() != 0 {
		t.Errorf("after expiry: stats %+v waiting %d", st, a.Waiting())
	}
}
