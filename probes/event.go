package probes

import "time"

// EventKind tells what happened to a span. The capture engine reports one
// record per finished span (EventSpan or EventAbandoned); EventEntry and
// EventReturn are the two halves of a span as a source that reports them
// apart hands them over, which the agent's assembler pairs.
type EventKind uint8

// Event kinds.
const (
	// EventEntry: the function was entered and a span opened.
	EventEntry EventKind = iota + 1
	// EventReturn: the function returned and the span closed.
	EventReturn
	// EventAbandoned: the span's frame is gone without a return (a panic
	// unwound it, or its goroutine was reused); the span ends failed.
	EventAbandoned
	// EventSpan: the function returned; the event is the whole span, from
	// Start to Time, with its entry and return values.
	EventSpan
)

// Value is one decoded attribute value; Kind says which field is set.
type Value struct {
	Kind  ValueKind
	Int   int64
	Uint  uint64
	Float float64
	Bool  bool
	Str   string
	Strs  []string
	// Truncated is set when a string or list was longer than the kernel's
	// copy bound.
	Truncated bool
	// Missing is set when the kernel could not read the value (nil pointer
	// on the field path, unmapped memory).
	Missing bool
}

// ErrorValue is a decoded error-rule value.
type ErrorValue struct {
	Failed bool
	// Type is the error's concrete Go type when known, e.g. "*errors.errorString".
	Type string
	// Message is the error text when the type's layout lets the kernel read it.
	Message string
	// Sentinel names the traced program's sentinel error the message was
	// built around ("router.ErrUpstreamTimeout"), "" when none (see
	// MatchSentinel).
	Sentinel string
}

// Event is one kernel event, decoded.
type Event struct {
	Kind  EventKind
	Probe *Resolved
	PID   uint32
	TID   uint32
	// Goroutine is the address of the goroutine's g struct.
	Goroutine uint64
	// Time is the wall-clock time of the event (converted from the kernel's
	// monotonic clock); for a whole span (EventSpan, EventAbandoned from
	// the capture engine) its end.
	Time time.Time
	// Start is the span's start on a whole span; zero on EventEntry and
	// EventReturn.
	Start        time.Time
	TraceID      [16]byte
	SpanID       [8]byte
	ParentSpanID [8]byte
	// Sampled is the trace's sampling decision (events are only emitted for
	// sampled traces, so it is true unless a probe asked for all events).
	Sampled bool
	// RemoteParent is set when the parent came from outside the process
	// (an incoming traceparent).
	RemoteParent bool
	// TraceState is the incoming tracestate of a root span whose parent is
	// remote (entry and whole-span events), as received: unvalidated, at most 256
	// bytes.
	TraceState string
	// Values are parallel to Probe.Entry (EventEntry) or Probe.Return
	// (EventReturn, EventSpan).
	Values []Value
	// EntryValues are parallel to Probe.Entry on a whole span.
	EntryValues []Value
	// EntryLost is set on a whole span whose entry values the kernel could
	// not keep until its end (more open spans than its store holds); they
	// are reported missing.
	EntryLost bool
	// Err is the error rule's outcome on EventReturn.
	Err ErrorValue
}
