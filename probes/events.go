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
	pdFlags    = pdErr + fdLen
	pdLen      = pdFlags + 8

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

	// struct event: the header of a span's one record; packed values follow
	// (see packedValue).
	evKind         = 0
	evFlags        = 1
	evNEntry       = 2
	evNReturn      = 3
	evProbeID      = 4
	evPID          = 8
	evTID          = 12
	evGoroutine    = 16
	evStart        = 24
	evEnd          = 32
	evTraceHi      = 40
	evTraceLo      = 48
	evSpanID       = 56
	evParentSpanID = 64
	evSize         = 72
	evEntryLen     = 74
	evHasErr       = 76
	evLen          = 80

	// recordMax is the longest record the kernel writes: the header and
	// 2*MaxFetches+1 values at their bounds.
	recordMax = evLen + (2*MaxFetches+1)*valSize

	// struct entry_vals (struct entry_small is its prefix)
	entryValsLenOff = 0
	entryValsNOff   = 4
	entryValsRegs   = 8
	entryValsData   = entryValsRegs + int(NumRegs)*8
	entryValsLen    = entryValsData + MaxFetches*valSize

	// struct probe_counters: eight u64 in this order.
	pcEntries   = 0
	pcReturns   = 8
	pcAbandoned = 16
	pcEmitted   = 24
	pcOverflow  = 32
	pcUnmatched = 40
	pcSkipped   = 48
	pcEndAt     = 56
	pcLen       = 64

	// struct config
	cfgWakeupBytes = 0
	cfgSampleBound = 8
	cfgReaderIdle  = 16
	cfgLen         = 24
)

// Flags of struct event and struct value (bpf/capture_types.h;
// TestSharedEnumsMatchBTF checks them against the object).
const (
	flagSampled      = 1
	flagRemoteParent = 2
	flagEntryLost    = 8

	// struct probe_desc flags (DESC_*).
	descEndNext      = 1
	descEndFromEntry = 2
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
	case EventSpan:
		return "span"
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
	// sentinels are the traced process's error variables, to name errors.
	sentinels []Sentinel
}

// decode decodes one record: a struct event header and its packed values.
// Every length in it is checked against the record and the probe: a record
// that does not fit gives ErrBadEvent, never a panic or an over-read.
func (d *decoder) decode(raw []byte) (Event, error) {
	var ev Event
	err := d.decodeInto(raw, &ev)
	return ev, err
}

// decodeInto is decode into ev. It takes no reflection and allocates one
// []Value per record for both halves and one string per string value; the
// decoded strings do not alias raw.
func (d *decoder) decodeInto(raw []byte, ev *Event) error {
	if len(raw) < evLen {
		return fmt.Errorf("decode record of %d bytes, want at least %d: %w", len(raw), evLen, ErrBadEvent)
	}
	le := binary.LittleEndian
	size := int(le.Uint16(raw[evSize:]))
	if size < evLen || size > len(raw) {
		return fmt.Errorf("decode record of %d bytes that says it has %d: %w", len(raw), size, ErrBadEvent)
	}
	raw = raw[:size]
	flags := raw[evFlags]
	*ev = Event{
		Kind:         EventKind(raw[evKind]),
		PID:          le.Uint32(raw[evPID:]),
		TID:          le.Uint32(raw[evTID:]),
		Goroutine:    le.Uint64(raw[evGoroutine:]),
		Start:        time.Unix(0, int64(le.Uint64(raw[evStart:]))+d.monoToWall),
		Time:         time.Unix(0, int64(le.Uint64(raw[evEnd:]))+d.monoToWall),
		Sampled:      flags&flagSampled != 0,
		RemoteParent: flags&flagRemoteParent != 0,
		EntryLost:    flags&flagEntryLost != 0,
	}
	// Ids are kept in the kernel as u64 halves; on the wire they are
	// big-endian, so trace_id[8:16] is the half the sampler looked at.
	binary.BigEndian.PutUint64(ev.TraceID[:8], le.Uint64(raw[evTraceHi:]))
	binary.BigEndian.PutUint64(ev.TraceID[8:], le.Uint64(raw[evTraceLo:]))
	binary.BigEndian.PutUint64(ev.SpanID[:], le.Uint64(raw[evSpanID:]))
	binary.BigEndian.PutUint64(ev.ParentSpanID[:], le.Uint64(raw[evParentSpanID:]))

	id := le.Uint32(raw[evProbeID:])
	if int(id) >= len(d.probes) || d.probes[id] == nil {
		return fmt.Errorf("decode record for probe id %d of %d: %w", id, len(d.probes), ErrBadEvent)
	}
	p := d.probes[id]
	ev.Probe = p
	if ev.Kind != EventSpan && ev.Kind != EventAbandoned {
		return fmt.Errorf("decode record of kind %d: %w", ev.Kind, ErrBadEvent)
	}

	nEntry, nReturn := int(raw[evNEntry]), int(raw[evNReturn])
	entryLen := int(le.Uint16(raw[evEntryLen:]))
	if nEntry != 0 && nEntry != len(p.Entry) {
		return fmt.Errorf("decode %d entry values of probe %q, its descriptor has %d: %w", nEntry, p.Spec.Symbol, len(p.Entry), ErrBadEvent)
	}
	if ev.Kind == EventAbandoned && nReturn != 0 || ev.Kind == EventSpan && nReturn != len(p.Return) {
		return fmt.Errorf("decode %d return values of probe %q, its descriptor has %d: %w", nReturn, p.Spec.Symbol, len(p.Return), ErrBadEvent)
	}
	if evLen+entryLen > len(raw) {
		return fmt.Errorf("decode %d bytes of entry values in a record of %d: %w", entryLen, len(raw), ErrBadEvent)
	}

	// One allocation for both halves. Entry values the kernel could not
	// keep until the end are reported missing, one per fetch.
	vals := make([]Value, len(p.Entry)+nReturn)
	ev.EntryValues, ev.Values = vals[:len(p.Entry):len(p.Entry)], vals[len(p.Entry):]
	off := evLen
	if nEntry == 0 {
		for i, f := range p.Entry {
			ev.EntryValues[i] = Value{Kind: f.Kind, Missing: true}
		}
	} else {
		end := evLen + entryLen
		for i, f := range p.Entry {
			hdr, data, next, err := packedValue(raw[:end], off)
			if err != nil {
				return fmt.Errorf("decode entry value %d of probe %q: %w", i, p.Spec.Symbol, err)
			}
			ev.EntryValues[i] = decodeValue(f, hdr, data)
			off = next
		}
		if off != end {
			return fmt.Errorf("decode entry values of probe %q: %d bytes, the record says %d: %w", p.Spec.Symbol, off-evLen, entryLen, ErrBadEvent)
		}
	}
	for i := range nReturn {
		hdr, data, next, err := packedValue(raw, off)
		if err != nil {
			return fmt.Errorf("decode return value %d of probe %q: %w", i, p.Spec.Symbol, err)
		}
		ev.Values[i] = decodeValue(p.Return[i], hdr, data)
		off = next
	}
	if ev.Kind == EventSpan && p.Error != nil {
		if raw[evHasErr] == 0 {
			return fmt.Errorf("decode record of probe %q without its error value: %w", p.Spec.Symbol, ErrBadEvent)
		}
		hdr, data, _, err := packedValue(raw, off)
		if err != nil {
			return fmt.Errorf("decode error value of probe %q: %w", p.Spec.Symbol, err)
		}
		ev.Err = d.decodeError(p, hdr, data)
	}
	return nil
}

// packedValue cuts the value at off out of a record: its struct value
// header and the data bytes the kernel sent (what its kind and lengths
// say), and returns the offset of the next value (8-byte aligned).
func packedValue(raw []byte, off int) (hdr, data []byte, next int, err error) {
	if off < 0 || off+valData > len(raw) {
		return nil, nil, 0, fmt.Errorf("value at %d of a %d-byte record: %w", off, len(raw), ErrBadEvent)
	}
	hdr = raw[off : off+valData]
	used := 0
	switch ValueKind(hdr[valKind]) {
	case KindString, KindError:
		used = int(binary.LittleEndian.Uint16(hdr[valLen:]))
	case KindStringSlice:
		n := int(binary.LittleEndian.Uint16(hdr[valLen:]))
		if n > MaxListElems {
			return nil, nil, 0, fmt.Errorf("list of %d elements, at most %d: %w", n, MaxListElems, ErrBadEvent)
		}
		for _, l := range hdr[valElemLen : valElemLen+n] {
			used += int(l)
		}
	}
	if used > valDataLen {
		return nil, nil, 0, fmt.Errorf("value of %d data bytes, at most %d: %w", used, valDataLen, ErrBadEvent)
	}
	start := off + valData
	next = start + (used+7)&^7
	if next > len(raw) {
		return nil, nil, 0, fmt.Errorf("value of %d data bytes at %d of a %d-byte record: %w", used, off, len(raw), ErrBadEvent)
	}
	return hdr, raw[start : start+used], next, nil
}

// decodeValue decodes one packed struct value read for f: hdr is its
// header, data the bytes it carries.
func decodeValue(f Fetch, hdr, data []byte) Value {
	le := binary.LittleEndian
	v := Value{Kind: f.Kind}
	flags := hdr[valFlags]
	v.Missing = flags&valMissing != 0
	v.Truncated = flags&valTruncated != 0
	if v.Missing {
		return v
	}
	word := le.Uint64(hdr[valWord:])
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
		if ValueKind(hdr[valKind]) == KindString {
			v.Str = string(data[:min(len(data), MaxStringBytes)])
		}
	case KindStringSlice:
		if ValueKind(hdr[valKind]) != KindStringSlice {
			break
		}
		n := min(int(le.Uint16(hdr[valLen:])), MaxListElems)
		v.Strs = make([]string, n)
		pos := 0
		for i := range n {
			l := min(int(hdr[valElemLen+i]), MaxElemBytes, len(data)-pos)
			v.Strs[i] = string(data[pos : pos+l])
			pos += l
		}
	}
	if v.Truncated {
		cutCopies(&v)
	}
	return v
}

// decodeError applies the probe's error rule to the value read at return.
func (d *decoder) decodeError(p *Resolved, hdr, data []byte) ErrorValue {
	f := *p.Error
	if f.Kind == KindError {
		itab := binary.LittleEndian.Uint64(hdr[valWord:])
		if itab == 0 {
			return ErrorValue{}
		}
		ev := ErrorValue{Failed: true}
		if d.itabType != nil {
			ev.Type = d.itabType(itab)
		}
		if hasMessageFirst(ev.Type) && hdr[valFlags]&valMissing == 0 && ValueKind(hdr[valKind]) == KindError {
			ev.Message = string(data[:min(len(data), MaxStringBytes)])
			if hdr[valFlags]&valTruncated != 0 {
				ev.Message = cutRunes(ev.Message)
			}
			ev.Sentinel = MatchSentinel(d.sentinels, ev.Message)
		}
		return ev
	}
	v := decodeValue(f, hdr, data)
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
