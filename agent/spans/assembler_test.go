package spans_test

import (
	"reflect"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/routerscope/routerscope/agent/spans"
	"github.com/routerscope/routerscope/agent/spans/spantest"
	"github.com/routerscope/routerscope/probes"
)

func TestAssembleNested(t *testing.T) {
	var c spantest.Collector
	a := spans.NewAssembler(c.Emit, time.Minute)
	for _, ev := range spantest.Request(7, 1, spantest.BaseTime) {
		a.Handle(ev)
	}
	recs := c.All()
	if len(recs) != 2 {
		t.Fatalf("got %d spans, want 2", len(recs))
	}
	child, root := recs[0], recs[1]
	if child.Name != "semantic_router.classification" || root.Name != "semantic_router.request.received" {
		t.Fatalf("names: %q %q", child.Name, root.Name)
	}
	if child.ParentSpanID != root.SpanID || root.ParentSpanID.IsValid() || child.TraceID != root.TraceID {
		t.Fatalf("nesting: child parent %s root span %s root parent %s", child.ParentSpanID, root.SpanID, root.ParentSpanID)
	}
	if child.TraceID != trace.TraceID(spantest.TraceID(1)) || child.SpanID != trace.SpanID(spantest.SpanID(101)) {
		t.Fatalf("ids not the kernel's: %s %s", child.TraceID, child.SpanID)
	}
	if !child.Start.Equal(spantest.BaseTime.Add(time.Millisecond)) || !child.End.Equal(spantest.BaseTime.Add(46900*time.Microsecond)) {
		t.Fatalf("child times %v..%v", child.Start, child.End)
	}
	if root.Kind != trace.SpanKindServer || child.Kind != trace.SpanKindInternal {
		t.Fatalf("kinds %v %v", root.Kind, child.Kind)
	}
	ca := spantest.AttrMap(child.Attributes)
	want := map[string]attribute.Value{
		"category.name":             attribute.StringValue("math"),
		"classification.time_ms":    attribute.Int64Value(45), // 45.9 ms truncated
		"classifier.type":           attribute.StringValue("keyword"),
		"security.action":           attribute.StringValue("allowed"),
		"request.size":              attribute.Int64Value(512),
		"pii.types":                 attribute.StringSliceValue([]string{"email", "phone"}),
		"classification.confidence": attribute.Float64Value(0.93),
	}
	for k, v := range want {
		if got, ok := ca[k]; !ok || got != v {
			t.Errorf("attribute %s = %v (%v), want %v (%v)", k, got.Emit(), got.Type(), v.Emit(), v.Type())
		}
	}
	if _, ok := ca["error"]; ok || child.Failed {
		t.Errorf("successful span marked failed")
	}
	ra := spantest.AttrMap(root.Attributes)
	if ra["request.id"].AsString() != "req-b" || ra["processing.time_ms"].AsInt64() != 50 {
		t.Errorf("root attributes %v", root.Attributes)
	}
	if a.Open() != 0 {
		t.Errorf("%d spans left open", a.Open())
	}
}

func TestAssembleConcurrentGoroutines(t *testing.T) {
	var c spantest.Collector
	a := spans.NewAssembler(c.Emit, time.Minute)
	const n = 50
	var wg sync.WaitGroup
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, ev := range spantest.Request(uint32(1000+g%3), byte(g), spantest.BaseTime.Add(time.Duration(g)*time.Microsecond)) {
				a.Handle(ev)
			}
		}()
	}
	wg.Wait()
	recs := c.All()
	if len(recs) != 2*n {
		t.Fatalf("got %d spans, want %d", len(recs), 2*n)
	}
	roots := map[trace.SpanID]spans.SpanRecord{}
	for _, r := range spantest.ByName(recs, "semantic_router.request.received") {
		roots[r.SpanID] = r
	}
	seen := map[trace.SpanID]bool{}
	for _, r := range recs {
		if seen[r.SpanID] {
			t.Fatalf("span %s emitted twice", r.SpanID)
		}
		seen[r.SpanID] = true
	}
	for _, ch := range spantest.ByName(recs, "semantic_router.classification") {
		root, ok := roots[ch.ParentSpanID]
		if !ok || root.TraceID != ch.TraceID || root.PID != ch.PID {
			t.Fatalf("child %s has no matching root (parent %s)", ch.SpanID, ch.ParentSpanID)
		}
		if ch.Start.Before(root.Start) || ch.End.After(root.End) {
			t.Fatalf("child outside its root: %v..%v in %v..%v", ch.Start, ch.End, root.Start, root.End)
		}
	}
	if len(roots) != n || a.Open() != 0 || a.Stats().Finished != 2*n {
		t.Fatalf("roots %d open %d stats %+v", len(roots), a.Open(), a.Stats())
	}
}

func TestReturnWithoutEntryIsDropped(t *testing.T) {
	var c spantest.Collector
	a := spans.NewAssembler(c.Emit, time.Minute)
	evs := spantest.Request(1, 1, spantest.BaseTime)
	a.Handle(evs[2]) // the classification return; its entry was lost
	if len(c.All()) != 0 || a.Stats().LostEntry != 1 {
		t.Fatalf("spans %d stats %+v", len(c.All()), a.Stats())
	}
	a.Handle(probes.Event{Kind: probes.EventReturn}) // no probe at all
	if a.Stats().LostEntry != 2 {
		t.Fatalf("event without probe not counted: %+v", a.Stats())
	}
}

func TestLostReturnExpires(t *testing.T) {
	var c spantest.Collector
	a := spans.NewAssembler(c.Emit, time.Minute)
	evs := spantest.Request(1, 1, spantest.BaseTime)
	a.Handle(evs[0])
	a.Handle(evs[1])
	if n := a.Expire(spantest.BaseTime.Add(30 * time.Second)); n != 0 || a.Open() != 2 {
		t.Fatalf("expired %d before max age", n)
	}
	a.Handle(evs[2]) // classification returns; the root's return is lost
	at := spantest.BaseTime.Add(2 * time.Minute)
	if n := a.Expire(at); n != 1 {
		t.Fatalf("expired %d, want 1", n)
	}
	recs := c.All()
	root := spantest.ByName(recs, "semantic_router.request.received")
	if len(recs) != 2 || len(root) != 1 {
		t.Fatalf("spans %+v", recs)
	}
	r := root[0]
	if !r.Failed || r.StatusMessage != spans.ReasonExpired+" after 1m0s" || !r.End.Equal(at) {
		t.Fatalf("expired span: failed %v msg %q end %v", r.Failed, r.StatusMessage, r.End)
	}
	if v, ok := spantest.AttrMap(r.Attributes)["error"]; !ok || !v.AsBool() {
		t.Fatalf("expired span lacks error=true: %v", r.Attributes)
	}
	if a.Stats().Expired != 1 || a.Open() != 0 {
		t.Fatalf("stats %+v open %d", a.Stats(), a.Open())
	}
}

func TestProcessExitEndsItsSpans(t *testing.T) {
	var c spantest.Collector
	a := spans.NewAssembler(c.Emit, time.Hour)
	p1, p2 := spantest.Request(1, 1, spantest.BaseTime), spantest.Request(2, 2, spantest.BaseTime)
	a.Handle(p1[0])
	a.Handle(p1[1])
	a.Handle(p2[0])
	if pids := a.OpenPIDs(); len(pids) != 2 {
		t.Fatalf("open pids %v", pids)
	}
	at := spantest.BaseTime.Add(time.Second)
	if n := a.EndProcess(1, at); n != 2 {
		t.Fatalf("ended %d, want 2", n)
	}
	for _, r := range c.All() {
		if r.PID != 1 || !r.Failed || r.StatusMessage != spans.ReasonProcessExited || !r.End.Equal(at) {
			t.Fatalf("span %+v", r)
		}
	}
	if a.Open() != 1 || a.Stats().ProcessExited != 2 {
		t.Fatalf("open %d stats %+v", a.Open(), a.Stats())
	}
	if n := a.EndAll(at); n != 1 || a.Stats().Stopped != 1 {
		t.Fatalf("EndAll ended %d", n)
	}
}

func TestAbandonedSpanFails(t *testing.T) {
	var c spantest.Collector
	a := spans.NewAssembler(c.Emit, time.Hour)
	evs := spantest.Request(1, 1, spantest.BaseTime)
	a.Handle(evs[1])
	ab := evs[2]
	ab.Kind = probes.EventAbandoned
	ab.Values = nil
	a.Handle(ab)
	recs := c.All()
	if len(recs) != 1 || !recs[0].Failed || recs[0].StatusMessage != spans.ReasonAbandoned || a.Stats().Abandoned != 1 {
		t.Fatalf("abandoned: %+v stats %+v", recs, a.Stats())
	}
	m := spantest.AttrMap(recs[0].Attributes)
	if _, ok := m["category.name"]; ok {
		t.Fatalf("abandoned span has return attributes: %v", recs[0].Attributes)
	}
	if m["request.size"].AsInt64() != 512 || !m["error"].AsBool() {
		t.Fatalf("abandoned span keeps entry attributes and error=true: %v", recs[0].Attributes)
	}
}

func TestErrorStatusFromReturn(t *testing.T) {
	cases := []struct {
		err     probes.ErrorValue
		msg     string
		errType string
	}{
		{probes.ErrorValue{Failed: true, Type: "*errors.errorString", Message: "model unavailable"}, "model unavailable", "*errors.errorString"},
		{probes.ErrorValue{Failed: true, Type: "*net.OpError"}, "*net.OpError", "*net.OpError"},
		{probes.ErrorValue{Failed: true}, "error", ""},
	}
	for _, tc := range cases {
		var c spantest.Collector
		a := spans.NewAssembler(c.Emit, time.Hour)
		evs := spantest.Request(1, 1, spantest.BaseTime)
		evs[2].Err = tc.err
		a.Handle(evs[1])
		a.Handle(evs[2])
		r := c.All()[0]
		m := spantest.AttrMap(r.Attributes)
		if !r.Failed || r.StatusMessage != tc.msg || !m["error"].AsBool() || m["error.type"].AsString() != tc.errType {
			t.Errorf("%+v: failed %v msg %q attrs %v", tc.err, r.Failed, r.StatusMessage, r.Attributes)
		}
		if m["category.name"].AsString() != "math" {
			t.Errorf("failed return lost its attributes: %v", r.Attributes)
		}
	}
}

func TestEndBeforeStartIsClamped(t *testing.T) {
	var c spantest.Collector
	a := spans.NewAssembler(c.Emit, time.Hour)
	evs := spantest.Request(1, 1, spantest.BaseTime)
	evs[2].Time = evs[1].Time.Add(-time.Microsecond)
	a.Handle(evs[1])
	a.Handle(evs[2])
	r := c.All()[0]
	if !r.End.Equal(r.Start) || spantest.AttrMap(r.Attributes)["classification.time_ms"].AsInt64() != 0 {
		t.Fatalf("negative duration not clamped: %v..%v", r.Start, r.End)
	}
}

func TestAttributeTyping(t *testing.T) {
	at := func(typ string, m map[string]string) probes.Attribute {
		return probes.Attribute{Name: "k", Type: typ, Map: m}
	}
	cases := []struct {
		attr probes.Attribute
		v    probes.Value
		want attribute.Value
	}{
		{at("", nil), spantest.Int(-3), attribute.Int64Value(-3)},
		{at("", nil), probes.Value{Kind: probes.KindUint, Uint: 7}, attribute.Int64Value(7)},
		{at("", nil), probes.Value{Kind: probes.KindUint, Uint: 1 << 63}, attribute.StringValue("9223372036854775808")},
		{at("", nil), spantest.Bool(true), attribute.BoolValue(true)},
		{at("", nil), spantest.Float(1.5), attribute.Float64Value(1.5)},
		{at("", nil), spantest.Str("x"), attribute.StringValue("x")},
		{at("", nil), spantest.Strs("a", "b"), attribute.StringSliceValue([]string{"a", "b"})},
		{at("string", nil), spantest.Int(42), attribute.StringValue("42")},
		{at("string", nil), spantest.Bool(false), attribute.StringValue("false")},
		{at("string", nil), spantest.Strs("a", "b"), attribute.StringValue("a,b")},
		{at("int", nil), spantest.Str("17"), attribute.Int64Value(17)},
		{at("int", nil), spantest.Bool(true), attribute.Int64Value(1)},
		{at("int", nil), spantest.Float(2.9), attribute.Int64Value(2)},
		{at("int", nil), spantest.Str("n/a"), attribute.StringValue("n/a")}, // not convertible: kept as read
		{at("float", nil), spantest.Int(3), attribute.Float64Value(3)},
		{at("float", nil), spantest.Str("0.25"), attribute.Float64Value(0.25)},
		{at("bool", nil), spantest.Int(0), attribute.BoolValue(false)},
		{at("bool", nil), spantest.Str("true"), attribute.BoolValue(true)},
		{at("string_list", nil), spantest.Str("one"), attribute.StringSliceValue([]string{"one"})},
		{at("", map[string]string{"true": "blocked", "false": "allowed"}), spantest.Bool(true), attribute.StringValue("blocked")},
		{at("", map[string]string{"1": "low", "2": "high"}), spantest.Int(2), attribute.StringValue("high")},
		{at("", map[string]string{"1": "low"}), spantest.Int(9), attribute.StringValue("9")}, // unmapped: the formatted value
	}
	for _, tc := range cases {
		kv, ok := spans.ValueAttr(tc.attr, tc.v)
		if !ok || kv.Value != tc.want {
			t.Errorf("type %q map %v value %+v: got %v (%v), want %v (%v)", tc.attr.Type, tc.attr.Map, tc.v,
				kv.Value.Emit(), kv.Value.Type(), tc.want.Emit(), tc.want.Type())
		}
	}
	if _, ok := spans.ValueAttr(at("int", nil), probes.Value{Kind: probes.KindInt, Missing: true}); ok {
		t.Error("a value the kernel could not read must be left off")
	}
	omit := func(typ string) probes.Attribute { a := at(typ, nil); a.OmitEmpty = true; return a }
	for _, v := range []probes.Value{spantest.Str(""), spantest.Bool(false), spantest.Int(0), {Kind: probes.KindStringSlice}} {
		if kv, ok := spans.ValueAttr(omit(""), v); ok {
			t.Errorf("omit_empty kept %+v as %v", v, kv.Value.Emit())
		}
	}
	for _, v := range []probes.Value{spantest.Str("u-1"), spantest.Bool(true), spantest.Int(3), {Kind: probes.KindStringSlice, Strs: []string{"x"}}} {
		if _, ok := spans.ValueAttr(omit(""), v); !ok {
			t.Errorf("omit_empty dropped the non-empty %+v", v)
		}
	}
}

func TestConstantAndDurationAttributes(t *testing.T) {
	consts := []struct {
		attr probes.Attribute
		want attribute.Value
	}{
		{probes.Attribute{Name: "k", Value: "v"}, attribute.StringValue("v")},
		{probes.Attribute{Name: "k", Value: 3}, attribute.Int64Value(3)},
		{probes.Attribute{Name: "k", Value: 2.5}, attribute.Float64Value(2.5)},
		{probes.Attribute{Name: "k", Value: 3, Type: "float"}, attribute.Float64Value(3)},
		{probes.Attribute{Name: "k", Value: 3, Type: "string"}, attribute.StringValue("3")},
		{probes.Attribute{Name: "k", Value: true}, attribute.BoolValue(true)},
		{probes.Attribute{Name: "k", Value: "7", Type: "int"}, attribute.Int64Value(7)},
		{probes.Attribute{Name: "k", Value: []any{"a", 1}}, attribute.StringSliceValue([]string{"a", "1"})},
	}
	for _, tc := range consts {
		if got := spans.ConstAttr(tc.attr); got.Value != tc.want {
			t.Errorf("constant %#v: got %v (%v), want %v", tc.attr.Value, got.Value.Emit(), got.Value.Type(), tc.want.Emit())
		}
	}
	d := 45*time.Millisecond + 987654*time.Nanosecond
	durs := []struct {
		from, typ string
		want      attribute.Value
	}{
		{"duration_ms", "", attribute.Int64Value(45)},
		{"duration_ms", "int", attribute.Int64Value(45)},
		{"duration_ms", "float", attribute.Float64Value(45.987654)},
		{"duration_us", "", attribute.Int64Value(45987)},
		{"duration_ns", "", attribute.Int64Value(45987654)},
	}
	for _, tc := range durs {
		got := spans.DurationAttr(probes.Attribute{Name: "k", From: tc.from, Type: tc.typ}, d)
		if got.Value != tc.want {
			t.Errorf("%s %s: got %v, want %v", tc.from, tc.typ, got.Value.Emit(), tc.want.Emit())
		}
	}
}

func TestSpanKinds(t *testing.T) {
	for in, want := range map[string]trace.SpanKind{
		"": trace.SpanKindInternal, "internal": trace.SpanKindInternal, "server": trace.SpanKindServer,
		"client": trace.SpanKindClient, "producer": trace.SpanKindProducer, "consumer": trace.SpanKindConsumer,
	} {
		if got := spans.SpanKindOf(in); got != want {
			t.Errorf("kind %q: %v", in, got)
		}
	}
}

// wholeSpans merges each entry event with its end (return or abandon) into
// the one event the capture engine sends per span, in end order.
func wholeSpans(evs []probes.Event) []probes.Event {
	entries := map[[8]byte]probes.Event{}
	var out []probes.Event
	for _, ev := range evs {
		if ev.Kind == probes.EventEntry {
			entries[ev.SpanID] = ev
			continue
		}
		w := ev
		w.Start, w.EntryValues = entries[ev.SpanID].Time, entries[ev.SpanID].Values
		if ev.Kind == probes.EventReturn {
			w.Kind = probes.EventSpan
		}
		out = append(out, w)
	}
	return out
}

// TestAssembleWholeSpans: a span the kernel sends whole becomes the same
// record as its entry and return paired, without opening anything.
func TestAssembleWholeSpans(t *testing.T) {
	var paired, whole spantest.Collector
	pa := spans.NewAssembler(paired.Emit, time.Minute)
	wa := spans.NewAssembler(whole.Emit, time.Minute)
	evs := spantest.Request(7, 1, spantest.BaseTime)
	for _, ev := range evs {
		pa.Handle(ev)
	}
	ws := wholeSpans(evs)
	if len(ws) != 2 {
		t.Fatalf("%d whole spans from the fixture, want 2", len(ws))
	}
	for _, ev := range ws {
		wa.Handle(ev)
	}
	if got, want := whole.All(), paired.All(); !reflect.DeepEqual(got, want) {
		t.Errorf("whole spans:\n%+v\npaired:\n%+v", got, want)
	}
	if wa.Open() != 0 || wa.Stats().Finished != 2 || wa.Stats().LostEntry != 0 {
		t.Errorf("stats %+v, %d open", wa.Stats(), wa.Open())
	}

	// Abandoned whole: failed, with its entry attributes, counted.
	ab := ws[0]
	ab.Kind, ab.Values, ab.Err = probes.EventAbandoned, nil, probes.ErrorValue{}
	var c spantest.Collector
	a := spans.NewAssembler(c.Emit, time.Minute)
	a.Handle(ab)
	recs := c.All()
	if len(recs) != 1 || !recs[0].Failed || recs[0].StatusMessage != spans.ReasonAbandoned || a.Stats().Abandoned != 1 || a.Open() != 0 {
		t.Fatalf("abandoned whole span: %+v, stats %+v", recs, a.Stats())
	}
	if got := spantest.AttrMap(recs[0].Attributes); got["request.size"].AsInt64() != 512 || !recs[0].Start.Equal(ab.Start) || !recs[0].End.Equal(ab.Time) {
		t.Errorf("abandoned whole span lost its entry: %+v", recs[0])
	}
}
