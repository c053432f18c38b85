package spans

import (
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/routerscope/routerscope/probes"
)

// Reasons a span is ended by the agent rather than by its return event;
// they become the span's status description.
const (
	ReasonAbandoned     = "span abandoned: the function's frame was unwound without a return (panic)"
	ReasonExpired       = "return event lost: span expired"
	ReasonProcessExited = "process exited before the span returned"
	ReasonAgentStopped  = "agent stopped before the span returned"
	ReasonDetached      = "agent detached from the process before the span returned (config reload or capture ended)"
)

// SpanRecord is one finished span as the kernel saw it, ready to be
// replayed into the OTel SDK.
type SpanRecord struct {
	Name         string
	Kind         trace.SpanKind
	TraceID      trace.TraceID
	SpanID       trace.SpanID
	ParentSpanID trace.SpanID
	// RemoteParent is set when the parent came from an incoming traceparent.
	RemoteParent bool
	// TraceState is the caller's tracestate on a root span with a remote
	// parent, validated (an invalid one is dropped whole).
	TraceState trace.TraceState
	Sampled    bool
	Start, End time.Time
	Attributes []attribute.KeyValue
	// Failed spans get error=true and an Error status with StatusMessage.
	Failed        bool
	StatusMessage string
	PID           uint32
}

// AssemblerStats counts what the assembler did, for logs.
type AssemblerStats struct {
	// Finished spans were emitted (including failed ones).
	Finished uint64
	// LostEntry counts return or abandoned events whose entry was never
	// seen (lost in the ring buffer, or sent before the agent attached);
	// they are dropped because their start is unknown.
	LostEntry uint64
	// Expired counts spans ended failed because their return never came
	// within the maximum age.
	Expired uint64
	// ProcessExited counts spans ended failed because their process exited.
	ProcessExited uint64
	// Abandoned counts spans the kernel reported abandoned.
	Abandoned uint64
	// Stopped counts spans ended failed when the agent stopped.
	Stopped uint64
	// Detached counts spans ended failed because the agent detached from
	// their live process (its attachment changed on reload, or its capture
	// ended): the return would be seen by no one.
	Detached uint64
	// Unmerged counts into_parent calls whose attributes were dropped:
	// their parent span was not open, or had no room left.
	Unmerged uint64
}

type spanKey struct {
	pid  uint32
	span [8]byte
}

// Assembler turns events into finished spans. The capture engine sends
// each span whole (probes.EventSpan, or EventAbandoned with its start),
// which becomes a record at once without a lock; a source that reports a
// span's entry and return apart gets them paired here. It is safe for
// concurrent use: events of many goroutines and processes interleave.
type Assembler struct {
	emit   func(SpanRecord)
	maxAge time.Duration

	mu   sync.Mutex
	open map[spanKey]probes.Event
	// merged holds attributes that into_parent probes added to open
	// spans (merge.go).
	merged map[spanKey]*pendingMerge
	// pendingMerges is len(merged), read without the lock.
	pendingMerges atomic.Int64

	finished, lostEntry, expired, exited, abandoned, stopped, detached atomic.Uint64
	// unmerged counts into_parent calls (or their attributes) dropped
	// because the parent was not open or had no room left.
	unmerged atomic.Uint64
}

// NewAssembler returns an assembler that hands every finished span to emit
// (called without the assembler's lock held) and ends spans open longer
// than maxAge when Expire is called.
func NewAssembler(emit func(SpanRecord), maxAge time.Duration) *Assembler {
	return &Assembler{emit: emit, maxAge: maxAge, open: map[spanKey]probes.Event{}, merged: map[spanKey]*pendingMerge{}}
}

// Handle consumes one event.
func (a *Assembler) Handle(ev probes.Event) {
	if ev.Probe == nil {
		// Decoding contract broken; nothing to name the span with.
		a.lostEntry.Add(1)
		return
	}
	if ev.Kind == probes.EventSpan || ev.Kind == probes.EventAbandoned && !ev.Start.IsZero() {
		a.handleWhole(&ev)
		return
	}
	key := spanKey{pid: ev.PID, span: ev.SpanID}
	switch ev.Kind {
	case probes.EventEntry:
		a.mu.Lock()
		prev, dup := a.open[key]
		a.open[key] = ev
		a.mu.Unlock()
		if dup {
			// The kernel reused a span id only if the return was lost.
			a.expired.Add(1)
			a.finish(buildRecord(prev, nil, ev.Time, true, ReasonExpired))
		}
	case probes.EventReturn, probes.EventAbandoned:
		a.mu.Lock()
		entry, ok := a.open[key]
		delete(a.open, key)
		a.mu.Unlock()
		if !ok {
			a.lostEntry.Add(1)
			return
		}
		a.closeSpan(entry, &ev, true)
	}
}

// handleWhole finishes a span the kernel sent whole.
func (a *Assembler) handleWhole(ev *probes.Event) {
	entry := probes.Event{
		Probe: ev.Probe, PID: ev.PID, Time: ev.Start, TraceID: ev.TraceID, SpanID: ev.SpanID,
		ParentSpanID: ev.ParentSpanID, Sampled: ev.Sampled, RemoteParent: ev.RemoteParent, TraceState: ev.TraceState,
		Values: ev.EntryValues,
	}
	a.closeSpan(entry, ev, false)
}

// closeSpan ends the span that entry opened as the closing event ev says,
// for both forms a span arrives in: an into_parent probe's attributes go to
// its parent, an abandoned frame ends failed, a return ends with the error
// rule's outcome. paired is set when entry came as an event of its own (the
// parent must then still be open here to take merged attributes).
func (a *Assembler) closeSpan(entry probes.Event, ev *probes.Event, paired bool) {
	abandoned := ev.Kind == probes.EventAbandoned
	switch {
	case entry.Probe.Spec.IntoParent:
		ret := ev
		if abandoned {
			ret = nil
		}
		a.mergeIntoParent(entry, ret, ev.Time, paired)
	case abandoned:
		a.abandoned.Add(1)
		a.finish(buildRecord(entry, nil, ev.Time, true, ReasonAbandoned))
	default:
		a.finish(buildRecord(entry, ev, ev.Time, ev.Err.Failed, errorMessage(ev.Err)))
	}
}

// Expire ends, as failed, every span opened more than maxAge before now,
// and returns how many.
func (a *Assembler) Expire(now time.Time) int {
	a.expireMerges(now)
	reason := ReasonExpired + " after " + a.maxAge.String()
	return a.endWhere(func(ev probes.Event) bool { return now.Sub(ev.Time) > a.maxAge }, now, reason, &a.expired)
}

// EndProcess ends, as failed, every open span of a process that exited.
func (a *Assembler) EndProcess(pid uint32, now time.Time) int {
	return a.endWhere(func(ev probes.Event) bool { return ev.PID == pid }, now, ReasonProcessExited, &a.exited)
}

// EndDetached ends, as failed, every open span of a live process the
// agent detached from.
func (a *Assembler) EndDetached(pid uint32, now time.Time) int {
	return a.endWhere(func(ev probes.Event) bool { return ev.PID == pid }, now, ReasonDetached, &a.detached)
}

// EndAll ends every open span as failed; called when the agent stops so no
// span stays unfinished.
func (a *Assembler) EndAll(now time.Time) int {
	return a.endWhere(func(probes.Event) bool { return true }, now, ReasonAgentStopped, &a.stopped)
}

// OpenPIDs returns the processes with open spans, for liveness checks.
func (a *Assembler) OpenPIDs() []uint32 {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := map[uint32]bool{}
	var pids []uint32
	for k := range a.open {
		if !seen[k.pid] {
			seen[k.pid] = true
			pids = append(pids, k.pid)
		}
	}
	return pids
}

// Open returns the number of open spans.
func (a *Assembler) Open() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.open)
}

// Stats returns the counters.
func (a *Assembler) Stats() AssemblerStats {
	return AssemblerStats{
		Finished:      a.finished.Load(),
		LostEntry:     a.lostEntry.Load(),
		Expired:       a.expired.Load(),
		ProcessExited: a.exited.Load(),
		Abandoned:     a.abandoned.Load(),
		Stopped:       a.stopped.Load(),
		Detached:      a.detached.Load(),
		Unmerged:      a.unmerged.Load(),
	}
}

func (a *Assembler) endWhere(match func(probes.Event) bool, now time.Time, reason string, counter *atomic.Uint64) int {
	var ended []probes.Event
	a.mu.Lock()
	for k, ev := range a.open {
		if match(ev) {
			ended = append(ended, ev)
			delete(a.open, k)
		}
	}
	a.mu.Unlock()
	for _, ev := range ended {
		counter.Add(1)
		a.finish(buildRecord(ev, nil, now, true, reason))
	}
	return len(ended)
}

func (a *Assembler) finish(r SpanRecord) {
	a.addMerged(&r)
	repairRecord(&r) // hostile strings end here (utf8.go)
	a.finished.Add(1)
	a.emit(r)
}

// buildRecord assembles a span from its entry event and, when it returned
// normally, its return event.
func buildRecord(entry probes.Event, ret *probes.Event, end time.Time, failed bool, msg string) SpanRecord {
	if end.Before(entry.Time) {
		// Clock conversion jitter between CPUs must not yield a negative
		// duration.
		end = entry.Time
	}
	p := entry.Probe
	r := SpanRecord{
		Name:          p.Spec.Span,
		Kind:          spanKind(p.Spec.Kind),
		TraceID:       entry.TraceID,
		SpanID:        entry.SpanID,
		ParentSpanID:  entry.ParentSpanID,
		RemoteParent:  entry.RemoteParent,
		Sampled:       entry.Sampled,
		Start:         entry.Time,
		End:           end,
		Failed:        failed,
		StatusMessage: msg,
		PID:           entry.PID,
	}
	if entry.TraceState != "" {
		// The caller's bytes: only a value that parses as W3C tracestate
		// reaches the exporter; an invalid one is dropped whole.
		if ts, err := trace.ParseTraceState(entry.TraceState); err == nil {
			r.TraceState = ts
		}
	}
	attrs := p.Spec.Attributes
	addFetched := func(fetches []probes.Fetch, vals []probes.Value) {
		for i, f := range fetches {
			if i >= len(vals) || f.Attr < 0 || f.Attr >= len(attrs) {
				continue
			}
			v := probes.Truncate(vals[i], attrs[f.Attr].MaxBytes)
			if kv, ok := valueAttr(attrs[f.Attr], v); ok {
				r.Attributes = append(r.Attributes, kv)
				if v.Truncated {
					// The value was cut (the kernel's copy bound or
					// max_bytes): say so beside it rather than pass a
					// prefix off as the whole value.
					r.Attributes = append(r.Attributes, attribute.Bool(attrs[f.Attr].Name+TruncatedSuffix, true))
				}
			}
		}
	}
	addFetched(p.Entry, entry.Values)
	if ret != nil {
		addFetched(p.Return, ret.Values)
	}
	for _, a := range attrs {
		switch {
		case isDuration(a.From):
			r.Attributes = append(r.Attributes, durationAttr(a, end.Sub(entry.Time)))
		case a.From == "" && a.Value != nil:
			r.Attributes = append(r.Attributes, constAttr(a))
		}
	}
	if failed && ret != nil {
		if m := errorRuleMessage(p.Return, ret.Values); m != "" {
			r.StatusMessage = m
		}
	}
	if failed {
		r.Attributes = append(r.Attributes, attribute.Bool("error", true))
		if typ := errorType(ret); typ != "" {
			r.Attributes = append(r.Attributes, attribute.String("error.type", typ))
		}
	}
	return r
}

// errorType is the error.type of a failed return: the program's sentinel
// error the failure was built around, which names the cause a user acts on
// (router.ErrUpstreamTimeout vs router.ErrClientGone), else the error's
// concrete type.
func errorType(ret *probes.Event) string {
	if ret == nil {
		return ""
	}
	if ret.Err.Sentinel != "" {
		return ret.Err.Sentinel
	}
	return ret.Err.Type
}

// errorRuleMessage is the value of the error rule's message source (see
// probes.ErrorRule.Message), "" when there is none or it is empty.
func errorRuleMessage(fetches []probes.Fetch, vals []probes.Value) string {
	for i, f := range fetches {
		if f.Attr == probes.AttrErrorMessage && i < len(vals) && !vals[i].Missing {
			return vals[i].Str
		}
	}
	return ""
}

// errorMessage is the status description of a failed return: the error's
// text, else its type, else a generic word.
func errorMessage(e probes.ErrorValue) string {
	switch {
	case !e.Failed:
		return ""
	case e.Message != "":
		return e.Message
	case e.Type != "":
		return e.Type
	}
	return "error"
}

func spanKind(k string) trace.SpanKind {
	switch k {
	case "server":
		return trace.SpanKindServer
	case "client":
		return trace.SpanKindClient
	case "producer":
		return trace.SpanKindProducer
	case "consumer":
		return trace.SpanKindConsumer
	}
	return trace.SpanKindInternal
}
