package probes

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Kernel bounds and struct layouts shared with bpf/capture.c. The decoder and
// the descriptor encoder use these explicit offsets (the records are read
// straight from the ring buffer); TestLayout checks every one of them against
// the BTF of the compiled object, so a change on one side fails the build's
// tests instead of corrupting events.
const (
	// MaxFetches is the most values a probe reads at entry, and again at return.
	MaxFetches = 16
	// MaxOffsets is the most offsets a memory location may have.
	MaxOffsets = 4
	// MaxProbes is the most probes one Attach can handle (the descriptor map size).
	MaxProbes = 256
	// MaxStringBytes is how many bytes of a string or error message the kernel copies.
	MaxStringBytes = 128
	// MaxListElems and MaxElemBytes bound the copy of a []string.
	MaxListElems = 8
	MaxElemBytes = 32
	// MaxDepth is the most open spans tracked per goroutine.
	MaxDepth = 16

	// struct fetch_desc
	fdKind     = 0
	fdSize     = 1
	fdInRegs   = 2
	fdNRegs    = 3
	fdRegs     = 4
	fdBase     = 7
	fdNOffsets = 8
	fdOffsets  = 16
	fdLen      = 48

	// struct probe_desc
	pdNEntry   = 0
	pdNReturn  = 4
	pdParentID = 8
	pdHasError = 12
	pdEntry    = 16
	pdReturn   = pdEntry + MaxFetches*fdLen
	pdErr      = pdReturn + MaxFetches*fdLen
	pdLen      = pdErr + fdLen

	// struct value
	valWord    = 0
	valWord2   = 8
	valLen     = 16
	valFlags   = 18
	valKind    = 19
	valElemLen = 20
	valData    = 32
	valDataLen = 256
	valSize    = valData + valDataLen

	// struct event
	evKind         = 0
	evFlags        = 1
	evNValues      = 2
	evProbeID      = 4
	evPID          = 8
	evTID          = 12
	evGoroutine    = 16
	evKtime        = 24
	evTraceHi      = 32
	evTraceLo      = 40
	evSpanID       = 48
	evParentSpanID = 56
	evValues       = 64
	evErr          = evValues + MaxFetches*valSize
	evLen          = evErr + valSize

	// struct probe_counters: six u64 in this order.
	pcEntries   = 0
	pcReturns   = 8
	pcAbandoned = 16
	pcEmitted   = 24
	pcOverflow  = 32
	pcUnmatched = 40
	pcLen       = 48

	// struct config
	cfgWakeupBytes = 0
	cfgSampleBound = 8
	cfgLen         = 16
)

// Flags of struct event and struct value (see bpf/capture.c).
const (
	flagSampled      = 1
	flagRemoteParent = 2
	valMissing       = 1
	valTruncated     = 2
)

// ErrBadEvent is returned when a ring buffer record cannot be decoded: it
// is too short, or names a probe or kind this Tracer does not know.
var ErrBadEvent = errors.New("malformed kernel event")

// hasMessageFirst reports whether an error type's first field is its
// message string, so the bytes the kernel read behind the data word are the
// message.
func hasMessageFirst(typ string) bool {
	switch typ {
	case "*errors.errorString", "*fmt.wrapError", "*fmt.wrapErrors":
		return true
	}
	return false
}

// String names the kind: entry, return or abandoned.
func (k EventKind) String() string {
	switch k {
	case EventEntry:
		return "entry"
	case EventReturn:
		return "return"
	case EventAbandoned:
		return "abandoned"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// decoder turns ring buffer records into Events.
type decoder struct {
	// probes is indexed by probe id.
	probes []*Resolved
	// monoToWall is added to a CLOCK_MONOTONIC time in ns to get Unix ns.
	monoToWall int64
	// itabType names the concrete type behind an itab address, "" if unknown.
	itabType func(itab uint64) string
}

// decode decodes one record of struct event.
func (d *decoder) decode(raw []byte) (Event, error) {
	if len(raw) < evValues {
		return Event{}, fmt.Errorf("decode event of %d bytes, want at least %d: %w", len(raw), evValues, ErrBadEvent)
	}
	le := binary.LittleEndian
	ev := Event{
		Kind:         EventKind(raw[evKind]),
		PID:          le.Uint32(raw[evPID:]),
		TID:          le.Uint32(raw[evTID:]),
		Goroutine:    le.Uint64(raw[evGoroutine:]),
		Time:         time.Unix(0, int64(le.Uint64(raw[evKtime:]))+d.monoToWall),
		Sampled:      raw[evFlags]&flagSampled != 0,
		RemoteParent: raw[evFlags]&flagRemoteParent != 0,
	}
	// Ids are kept in the kernel as u64 halves; on the wire they are
	// big-endian, so trace_id[8:16] is the half the sampler looked at.
	binary.BigEndian.PutUint64(ev.TraceID[:8], le.Uint64(raw[evTraceHi:]))
	binary.BigEndian.PutUint64(ev.TraceID[8:], le.Uint64(raw[evTraceLo:]))
	binary.BigEndian.PutUint64(ev.SpanID[:], le.Uint64(raw[evSpanID:]))
	binary.BigEndian.PutUint64(ev.ParentSpanID[:], le.Uint64(raw[evParentSpanID:]))

	id := le.Uint32(raw[evProbeID:])
	if int(id) >= len(d.probes) || d.probes[id] == nil {
		return Event{}, fmt.Errorf("decode event for probe id %d of %d: %w", id, len(d.probes), ErrBadEvent)
	}
	ev.Probe = d.probes[id]

	var fetches []Fetch
	switch ev.Kind {
	case EventEntry:
		fetches = ev.Probe.Entry
	case EventReturn:
		fetches = ev.Probe.Return
	case EventAbandoned:
		return ev, nil
	default:
		return Event{}, fmt.Errorf("decode event of kind %d: %w", ev.Kind, ErrBadEvent)
	}
	n := int(raw[evNValues])
	if n != len(fetches) || n > MaxFetches {
		return Event{}, fmt.Errorf("decode %d values of probe %q, its descriptor has %d: %w", n, ev.Probe.Spec.Symbol, len(fetches), ErrBadEvent)
	}
	if len(raw) < evValues+n*valSize {
		return Event{}, fmt.Errorf("decode event of %d bytes with %d values: %w", len(raw), n, ErrBadEvent)
	}
	ev.Values = make([]Value, n)
	for i := range n {
		ev.Values[i] = decodeValue(fetches[i], raw[evValues+i*valSize:][:valSize])
	}
	if ev.Kind == EventReturn && ev.Probe.Error != nil {
		if len(raw) < evLen {
			return Event{}, fmt.Errorf("decode return event of %d bytes, want %d: %w", len(raw), evLen, ErrBadEvent)
		}
		ev.Err = d.decodeError(ev.Probe, raw[evErr:][:valSize])
	}
	return ev, nil
}

// decodeValue decodes one struct value read for f.
func decodeValue(f Fetch, raw []byte) Value {
	le := binary.LittleEndian
	v := Value{Kind: f.Kind}
	flags := raw[valFlags]
	v.Missing = flags&valMissing != 0
	v.Truncated = flags&valTruncated != 0
	if v.Missing {
		return v
	}
	word := le.Uint64(raw[valWord:])
	n := int(le.Uint16(raw[valLen:]))
	data := raw[valData:][:valDataLen]
	switch f.Kind {
	case KindInt:
		v.Int = signExtend(word, f.Size)
	case KindUint:
		v.Uint = truncate(word, f.Size)
	case KindBool:
		v.Bool = word&0xff != 0
	case KindFloat:
		if f.Size == 4 {
			v.Float = float64(math.Float32frombits(uint32(word)))
		} else {
			v.Float = math.Float64frombits(word)
		}
	case KindString:
		v.Str = string(data[:min(n, MaxStringBytes)])
	case KindStringSlice:
		n = min(n, MaxListElems)
		v.Strs = make([]string, n)
		for i := range n {
			l := min(int(raw[valElemLen+i]), MaxElemBytes)
			v.Strs[i] = string(data[i*MaxElemBytes:][:l])
		}
	}
	if v.Truncated {
		cutCopies(&v)
	}
	return v
}

// decodeError applies the probe's error rule to the value read at return.
func (d *decoder) decodeError(p *Resolved, raw []byte) ErrorValue {
	f := *p.Error
	if f.Kind == KindError {
		itab := binary.LittleEndian.Uint64(raw[valWord:])
		if itab == 0 {
			return ErrorValue{}
		}
		ev := ErrorValue{Failed: true}
		if d.itabType != nil {
			ev.Type = d.itabType(itab)
		}
		if hasMessageFirst(ev.Type) && raw[valFlags]&valMissing == 0 {
			n := min(int(binary.LittleEndian.Uint16(raw[valLen:])), MaxStringBytes)
			ev.Message = string(raw[valData:][:n])
			if raw[valFlags]&valTruncated != 0 {
				ev.Message = cutRunes(ev.Message)
			}
		}
		return ev
	}
	v := decodeValue(f, raw)
	if v.Missing {
		return ErrorValue{}
	}
	var rule ErrorRule
	if p.Spec.Error != nil {
		rule = *p.Spec.Error
	}
	return ErrorValue{Failed: ruleFails(rule, v)}
}

// ruleFails decides a bool or integer error rule: a bool fails when it
// equals Equals (default true); an integer when it equals Equals or is at
// least AtLeast.
func ruleFails(rule ErrorRule, v Value) bool {
	switch v.Kind {
	case KindBool:
		want := true
		if b, ok := rule.Equals.(bool); ok {
			want = b
		} else if s, ok := rule.Equals.(string); ok {
			if b, err := strconv.ParseBool(s); err == nil {
				want = b
			}
		}
		return v.Bool == want
	case KindInt, KindUint:
		x := v.Int
		if v.Kind == KindUint {
			x = int64(v.Uint)
		}
		if rule.AtLeast != nil && x >= *rule.AtLeast {
			return true
		}
		if eq, ok := asInt(rule.Equals); ok && x == eq {
			return true
		}
	}
	return false
}

// asInt converts a YAML scalar to an integer.
func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, true
	case uint64:
		return int64(x), true
	case float64:
		return int64(x), x == math.Trunc(x)
	case string:
		n, err := strconv.ParseInt(x, 0, 64)
		return n, err == nil
	}
	return 0, false
}

// signExtend reads the low size bytes of w as a signed integer.
func signExtend(w uint64, size uint8) int64 {
	if size == 0 || size >= 8 {
		return int64(w)
	}
	shift := 64 - 8*uint(size)
	return int64(w<<shift) >> shift
}

// truncate keeps the low size bytes of w.
func truncate(w uint64, size uint8) uint64 {
	if size == 0 || size >= 8 {
		return w
	}
	return w & (1<<(8*uint(size)) - 1)
}
