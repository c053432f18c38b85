package spantest

import (
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/routerscope/routerscope/agent/spans"
	"github.com/routerscope/routerscope/probes"
)

// RootProbe is the guide's root span: the router's request handler.
func RootProbe() *probes.Resolved {
	return &probes.Resolved{
		ID: 0,
		Spec: probes.Probe{
			Symbol: "main.(*Server).handle",
			Span:   "semantic_router.request.received",
			Kind:   "server",
			Attributes: []probes.Attribute{
				{Name: "request.id", From: "arg:1", Type: "string"},
				{Name: "processing.time_ms", From: "duration_ms", Type: "int"},
			},
		},
		Entry:    []probes.Fetch{{Attr: 0, Kind: probes.KindString}},
		ParentID: -1,
	}
}

// ClassifyProbe is the guide's classification span, a child of RootProbe
// with typed, mapped, constant and duration attributes.
func ClassifyProbe() *probes.Resolved {
	return &probes.Resolved{
		ID: 1,
		Spec: probes.Probe{
			Symbol: "main.(*Router).classify",
			Span:   "semantic_router.classification",
			Kind:   "internal",
			Attributes: []probes.Attribute{
				{Name: "category.name", From: "return:0.Category", Type: "string"},
				{Name: "classification.time_ms", From: "duration_ms", Type: "int"},
				{Name: "classifier.type", Value: "keyword"},
				{Name: "security.action", From: "return:0.Blocked", Map: map[string]string{"true": "blocked", "false": "allowed"}},
				{Name: "request.size", From: "arg:1", Type: "int"},
				{Name: "pii.types", From: "return:0.PII", Type: "string_list"},
				{Name: "classification.confidence", From: "return:0.Score", Type: "float"},
			},
			Error: &probes.ErrorRule{From: "return:1"},
		},
		Entry: []probes.Fetch{{Attr: 4, Kind: probes.KindInt, Size: 8}},
		Return: []probes.Fetch{
			{Attr: 0, Kind: probes.KindString},
			{Attr: 3, Kind: probes.KindBool, Size: 1},
			{Attr: 5, Kind: probes.KindStringSlice},
			{Attr: 6, Kind: probes.KindFloat, Size: 8},
		},
		ParentID: 0,
	}
}

// BaseTime is the fixtures' clock: nanoseconds set, so a test sees a
// rounding or truncation.
var BaseTime = time.Date(2026, 11, 25, 12, 0, 0, 123456789, time.UTC)

// TraceID is a trace id that differs by n.
func TraceID(n byte) [16]byte { return [16]byte{0: 0xab, 14: n, 15: 1} }

// SpanID is a span id that differs by n.
func SpanID(n byte) [8]byte { return [8]byte{0: 0xcd, 6: n, 7: 1} }

// Entry is a sampled entry event of probe p.
func Entry(p *probes.Resolved, pid uint32, trace [16]byte, span, parent [8]byte, at time.Time, vals ...probes.Value) probes.Event {
	return probes.Event{Kind: probes.EventEntry, Probe: p, PID: pid, TID: pid, Time: at,
		TraceID: trace, SpanID: span, ParentSpanID: parent, Sampled: true, Values: vals}
}

// Return is a sampled return event of probe p, with its error value.
func Return(p *probes.Resolved, pid uint32, trace [16]byte, span, parent [8]byte, at time.Time, errv probes.ErrorValue, vals ...probes.Value) probes.Event {
	return probes.Event{Kind: probes.EventReturn, Probe: p, PID: pid, TID: pid, Time: at,
		TraceID: trace, SpanID: span, ParentSpanID: parent, Sampled: true, Values: vals, Err: errv}
}

// Str is a string value.
func Str(s string) probes.Value { return probes.Value{Kind: probes.KindString, Str: s} }

// Int is an integer value.
func Int(n int64) probes.Value { return probes.Value{Kind: probes.KindInt, Int: n} }

// Bool is a boolean value.
func Bool(b bool) probes.Value { return probes.Value{Kind: probes.KindBool, Bool: b} }

// Float is a floating-point value.
func Float(f float64) probes.Value { return probes.Value{Kind: probes.KindFloat, Float: f} }

// Strs is a string-list value.
func Strs(s ...string) probes.Value { return probes.Value{Kind: probes.KindStringSlice, Strs: s} }

// Request is the event stream of one request: root span with a
// classification child, the child taking 45.9 ms.
func Request(pid uint32, n byte, t0 time.Time) []probes.Event {
	tr, root, child := TraceID(n), SpanID(n), SpanID(n+100)
	rp, cp := RootProbe(), ClassifyProbe()
	return []probes.Event{
		Entry(rp, pid, tr, root, [8]byte{}, t0, Str("req-"+string('a'+rune(n%26)))),
		Entry(cp, pid, tr, child, root, t0.Add(time.Millisecond), Int(512)),
		Return(cp, pid, tr, child, root, t0.Add(time.Millisecond+45900*time.Microsecond), probes.ErrorValue{},
			Str("math"), Bool(false), Strs("email", "phone"), Float(0.93)),
		Return(rp, pid, tr, root, [8]byte{}, t0.Add(50*time.Millisecond), probes.ErrorValue{}),
	}
}

// Collector gathers emitted records, safe for concurrent emitters.
type Collector struct {
	mu   sync.Mutex
	recs []spans.SpanRecord
}

// Emit records r; it is an Assembler's emit function.
func (c *Collector) Emit(r spans.SpanRecord) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, r)
}

// All returns the records emitted so far, in order.
func (c *Collector) All() []spans.SpanRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]spans.SpanRecord(nil), c.recs...)
}

// AttrMap indexes attributes by key; a repeated key keeps its last value.
func AttrMap(kvs []attribute.KeyValue) map[string]attribute.Value {
	m := map[string]attribute.Value{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

// ByName returns the records with the given span name, in order.
func ByName(recs []spans.SpanRecord, name string) []spans.SpanRecord {
	var out []spans.SpanRecord
	for _, r := range recs {
		if r.Name == name {
			out = append(out, r)
		}
	}
	return out
}

// Feed hands evs, in order, to a new Assembler that emits to emit and
// expires nothing (its maximum age is an hour).
func Feed(emit func(spans.SpanRecord), evs []probes.Event) {
	a := spans.NewAssembler(emit, time.Hour)
	for _, ev := range evs {
		a.Handle(ev)
	}
}
