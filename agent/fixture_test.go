package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routerscope/routerscope/internal/testenv"
	"github.com/routerscope/routerscope/probes"
)

// Fixture probes shaped like the guide's spans.
func rootProbe() *probes.Resolved {
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

func classifyProbe() *probes.Resolved {
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

var baseTime = time.Date(2026, 11, 25, 12, 0, 0, 123456789, time.UTC)

func tid(n byte) [16]byte { return [16]byte{0: 0xab, 14: n, 15: 1} }
func sid(n byte) [8]byte  { return [8]byte{0: 0xcd, 6: n, 7: 1} }

func entry(p *probes.Resolved, pid uint32, trace [16]byte, span, parent [8]byte, at time.Time, vals ...probes.Value) probes.Event {
	return probes.Event{Kind: probes.EventEntry, Probe: p, PID: pid, TID: pid, Time: at,
		TraceID: trace, SpanID: span, ParentSpanID: parent, Sampled: true, Values: vals}
}

func ret(p *probes.Resolved, pid uint32, trace [16]byte, span, parent [8]byte, at time.Time, errv probes.ErrorValue, vals ...probes.Value) probes.Event {
	return probes.Event{Kind: probes.EventReturn, Probe: p, PID: pid, TID: pid, Time: at,
		TraceID: trace, SpanID: span, ParentSpanID: parent, Sampled: true, Values: vals, Err: errv}
}

func str(s string) probes.Value { return probes.Value{Kind: probes.KindString, Str: s} }
func i64(n int64) probes.Value  { return probes.Value{Kind: probes.KindInt, Int: n} }
func bl(b bool) probes.Value    { return probes.Value{Kind: probes.KindBool, Bool: b} }
func flt(f float64) probes.Value {
	return probes.Value{Kind: probes.KindFloat, Float: f}
}
func strs(s ...string) probes.Value { return probes.Value{Kind: probes.KindStringSlice, Strs: s} }

// request is the event stream of one request: root span with a
// classification child, the child taking 45.9 ms.
func request(pid uint32, n byte, t0 time.Time) []probes.Event {
	tr, root, child := tid(n), sid(n), sid(n+100)
	rp, cp := rootProbe(), classifyProbe()
	return []probes.Event{
		entry(rp, pid, tr, root, [8]byte{}, t0, str("req-"+string('a'+rune(n%26)))),
		entry(cp, pid, tr, child, root, t0.Add(time.Millisecond), i64(512)),
		ret(cp, pid, tr, child, root, t0.Add(time.Millisecond+45900*time.Microsecond), probes.ErrorValue{},
			str("math"), bl(false), strs("email", "phone"), flt(0.93)),
		ret(rp, pid, tr, root, [8]byte{}, t0.Add(50*time.Millisecond), probes.ErrorValue{}),
	}
}

// collector gathers emitted records, safe for concurrent emitters.
type collector struct {
	mu   sync.Mutex
	recs []SpanRecord
}

func (c *collector) emit(r SpanRecord) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, r)
}

func (c *collector) all() []SpanRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]SpanRecord(nil), c.recs...)
}

// chanSource is a synthetic EventSource fed by a test.
type chanSource struct {
	ch     chan probes.Event
	closed chan struct{}
	once   sync.Once
	lost   atomic.Uint64
	closes atomic.Int32
	// reads counts the Read calls: the agent reads a capture and handles
	// each event in one goroutine, so once Read is called again the
	// event it returned before has been handled.
	reads atomic.Int32
}

var errSourceClosed = errors.New("source closed")

func newChanSource() *chanSource {
	return &chanSource{ch: make(chan probes.Event), closed: make(chan struct{})}
}

func (s *chanSource) Read(ctx context.Context) (probes.Event, error) {
	s.reads.Add(1)
	select {
	case <-ctx.Done():
		return probes.Event{}, ctx.Err()
	case <-s.closed:
		return probes.Event{}, errSourceClosed
	case ev, ok := <-s.ch:
		if !ok {
			return probes.Event{}, errSourceClosed
		}
		return ev, nil
	}
}

// handled waits until the agent has handled the n events fed so far (it
// is reading again for the next one).
func (s *chanSource) handled(t *testing.T, n int) {
	t.Helper()
	testenv.Eventually(t, fmt.Sprintf("%d events handled", n), func() bool { return s.reads.Load() > int32(n) })
}

func (s *chanSource) Lost() uint64 { return s.lost.Load() }

func (s *chanSource) Close() error {
	s.closes.Add(1)
	s.once.Do(func() { close(s.closed) })
	return nil
}

// madeUpTarget lets Run trace a made-up PID (4242) as a live process. On a
// busy machine that PID may belong to a real process (another test's), which
// Run must not read: its start time would make the agent detach when that
// process exits, and its procfs entry would name the target. So procfs is
// an empty directory and liveness is faked.
func madeUpTarget(t testing.TB) Option {
	dir := t.TempDir()
	return func(o *runOptions) {
		o.alive = func(uint32) bool { return true }
		o.procRoot = dir
	}
}
