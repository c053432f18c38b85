package probes

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/cilium/ebpf"

	"github.com/routerscope/routerscope/bpf"
)

// Span flags of struct span_entry that say where its entry values wait
// (FLAG_ENTRY_VALS, FLAG_ENTRY_SMALL in bpf/capture_types.h;
// TestSharedEnumsMatchBTF checks them).
const (
	spanEntryVals  = 4
	spanEntrySmall = 32
	// entrySmallMax is ENTRY_SMALL_MAX (capture_types.h): the data bytes of
	// struct entry_small, only a capacity hint here.
	entrySmallMax = 416
)

// maxOpenSpanStacks bounds the goroutine stacks TakeOpenSpans reads for one
// process: the stacks map holds at most its configured size anyway, and a
// map that changes under the walk must not keep it going.
const maxOpenSpanStacks = maxMapEntries

// TakeOpenSpans removes from the kernel the spans the Tracer's process
// still has open (entered, not returned) and returns them as EventEntry
// events: Time is the span's start and Values its entry values, decoded
// as a finished span's would be (reported Missing, with EntryLost set,
// when the kernel no longer holds them or they do not decode). The
// kernel sends a span only when it ends, so without this the spans of a
// process killed mid-request, its request's root among them, were never
// reported, and their goroutine stacks and entry values stayed in the
// kernel maps. Call it once the process has exited, or when detaching
// from it; spans of unsampled traces are deleted but not returned. A
// Tracer of every process (pid 0) has none to take.
//
// Kernel map contents are read as hostile: depths, lengths and value
// counts are bounded by the layouts, unknown probe ids are skipped.
func (t *Tracer) TakeOpenSpans() ([]Event, error) {
	if t.pid <= 0 {
		return nil, nil
	}
	tgid := uint32(t.pid)
	m := t.c.maps
	// Collect the keys first: deleting while walking a hash map restarts
	// the walk.
	var keys []bpf.CaptureGkey
	var k bpf.CaptureGkey
	it := m.Stacks.Iterate()
	var st bpf.CaptureSpanStack
	for n := 0; n < maxOpenSpanStacks && it.Next(&k, &st); n++ {
		if k.Tgid == tgid {
			keys = append(keys, k)
		}
	}
	var errs []error
	if err := it.Err(); err != nil {
		errs = append(errs, err)
	}
	var out []Event
	for _, k := range keys {
		if err := m.Stacks.Lookup(&k, &st); err != nil {
			continue // its goroutine ended meanwhile
		}
		depth := min(int(st.Depth), len(st.E))
		for i := range depth {
			e := &st.E[i]
			ev, ok := t.openSpan(k.G, spanEntry{traceHi: e.TraceHi, traceLo: e.TraceLo, spanID: e.SpanId,
				parentID: e.ParentSpanId, startNs: e.StartNs, probeID: e.ProbeId, flags: e.Flags})
			if ok {
				out = append(out, ev)
			}
		}
		if err := m.Stacks.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
		_ = m.Inherit.Delete(&k)
		_ = m.Unsampled.Delete(&k)
	}
	if err := errors.Join(errs...); err != nil {
		return out, err
	}
	return out, nil
}

// spanEntry is the part of a struct span_entry an open span is built from.
type spanEntry struct {
	traceHi, traceLo, spanID, parentID, startNs uint64
	probeID, flags                              uint32
}

// openSpan turns one kernel stack entry into an EventEntry, taking its
// entry values out of entry_small or entry_vals. It reports false for a
// span of another Tracer's probes or of an unsampled trace (whose values,
// if any, are still deleted).
func (t *Tracer) openSpan(g uint64, e spanEntry) (Event, bool) {
	// A record as the kernel would have sent for the span abandoned now:
	// the header and its packed entry values, decoded by the one decoder.
	rec := make([]byte, evLen, evLen+entrySmallMax)
	le := binary.LittleEndian
	rec[evKind] = byte(EventAbandoned)
	rec[evFlags] = byte(e.flags & (flagSampled | flagRemoteParent))
	le.PutUint32(rec[evProbeID:], e.probeID)
	le.PutUint32(rec[evPID:], uint32(t.pid))
	le.PutUint64(rec[evGoroutine:], g)
	le.PutUint64(rec[evStart:], e.startNs)
	le.PutUint64(rec[evEnd:], e.startNs)
	le.PutUint64(rec[evTraceHi:], e.traceHi)
	le.PutUint64(rec[evTraceLo:], e.traceLo)
	le.PutUint64(rec[evSpanID:], e.spanID)
	le.PutUint64(rec[evParentSpanID:], e.parentID)
	if e.flags&spanEntryVals != 0 {
		vals := t.takeEntryValues(e.spanID, e.flags&spanEntrySmall != 0)
		if vals == nil {
			rec[evFlags] |= flagEntryLost
		} else {
			rec = append(rec, vals.data...)
			rec[evNEntry] = vals.n
			le.PutUint16(rec[evEntryLen:], uint16(len(vals.data)))
		}
	}
	le.PutUint16(rec[evSize:], uint16(len(rec)))
	if !t.ownsID(e.probeID) || e.flags&flagSampled == 0 {
		return Event{}, false
	}
	ev, err := t.dec.decode(rec)
	if err != nil {
		// Values that do not decode are reported missing, the span kept.
		rec = rec[:evLen]
		rec[evNEntry] = 0
		rec[evFlags] |= flagEntryLost
		le.PutUint16(rec[evEntryLen:], 0)
		le.PutUint16(rec[evSize:], evLen)
		if ev, err = t.dec.decode(rec); err != nil {
			return Event{}, false
		}
	}
	if ev.RemoteParent {
		ev.TraceState = t.traceState(ev.TraceID)
	}
	// Handed over as the span's entry: the caller ends it.
	ev.Kind = EventEntry
	ev.Time, ev.Start = ev.Start, time.Time{}
	ev.Values, ev.EntryValues = ev.EntryValues, nil
	return ev, true
}

// entryValues are a span's packed entry values as the kernel kept them.
type entryValues struct {
	n    uint8
	data []byte
}

// takeEntryValues reads and deletes span's entry values from entry_small
// (small) or entry_vals; nil when they are gone or their header is not
// sane.
func (t *Tracer) takeEntryValues(span uint64, small bool) *entryValues {
	m := t.c.maps.EntryVals
	if small {
		m = t.c.maps.EntrySmall
	}
	buf, err := m.LookupBytes(&span)
	_ = m.Delete(&span)
	if err != nil || len(buf) < entryValsData {
		return nil
	}
	le := binary.LittleEndian
	// struct entry_vals (entry_small is its prefix): len, n, regs, data.
	length, n := le.Uint32(buf[entryValsLenOff:]), le.Uint32(buf[entryValsNOff:])
	data := buf[entryValsData:]
	if uint64(length) > uint64(len(data)) || n > MaxFetches {
		return nil
	}
	return &entryValues{n: uint8(n), data: data[:length]}
}
