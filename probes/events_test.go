package probes

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"
	"time"
)

// record builds a span's ring buffer record the way the kernel lays it out:
// a struct event header, then packed values.
type record struct {
	b              []byte
	nEntry, nRet   int
	entryLen       int
	entriesStarted bool
}

func newRecord(kind EventKind, probeID uint32) *record {
	b := make([]byte, evLen)
	b[evKind] = byte(kind)
	b[evFlags] = flagSampled
	le := binary.LittleEndian
	le.PutUint32(b[evProbeID:], probeID)
	le.PutUint32(b[evPID:], 42)
	le.PutUint32(b[evTID:], 43)
	le.PutUint64(b[evGoroutine:], 0xc000001000)
	le.PutUint64(b[evStart:], 5_000_000_000)
	le.PutUint64(b[evEnd:], 5_000_000_700)
	le.PutUint64(b[evTraceHi:], 0x0102030405060708)
	le.PutUint64(b[evTraceLo:], 0x090a0b0c0d0e0f10)
	le.PutUint64(b[evSpanID:], 0x1112131415161718)
	le.PutUint64(b[evParentSpanID:], 0x2122232425262728)
	return &record{b: b}
}

// entry appends packed entry values; call it before ret and err.
func (r *record) entry(vs ...[]byte) *record {
	for _, v := range vs {
		r.b = append(r.b, v...)
		r.entryLen += len(v)
		r.nEntry++
	}
	return r
}

func (r *record) ret(vs ...[]byte) *record {
	for _, v := range vs {
		r.b = append(r.b, v...)
		r.nRet++
	}
	return r
}

func (r *record) err(v []byte) *record {
	r.b = append(r.b, v...)
	r.b[evHasErr] = 1
	return r
}

func (r *record) bytes() []byte {
	b := r.b
	b[evNEntry], b[evNReturn] = byte(r.nEntry), byte(r.nRet)
	binary.LittleEndian.PutUint16(b[evEntryLen:], uint16(r.entryLen))
	binary.LittleEndian.PutUint16(b[evSize:], uint16(len(b)))
	return b
}

// packed is one packed struct value: its header and data padded to 8.
func packed(kind ValueKind, word uint64, flags byte, data string, elemLens ...byte) []byte {
	v := make([]byte, valData+(len(data)+7)&^7)
	binary.LittleEndian.PutUint64(v[valWord:], word)
	v[valFlags] = flags
	v[valKind] = byte(kind)
	n := len(data)
	if kind == KindStringSlice {
		n = len(elemLens)
		copy(v[valElemLen:], elemLens)
	}
	binary.LittleEndian.PutUint16(v[valLen:], uint16(n))
	copy(v[valData:], data)
	return v
}

func pscalar(kind ValueKind, w uint64) []byte { return packed(kind, w, 0, "") }

func TestDecodeSpan(t *testing.T) {
	p := &Resolved{ID: 1, Spec: Probe{Symbol: "main.f"}, ParentID: -1, Entry: []Fetch{
		{Attr: 0, Kind: KindString},
		{Attr: 1, Kind: KindInt, Size: 4},
		{Attr: 2, Kind: KindBool, Size: 1},
		{Attr: 3, Kind: KindFloat, Size: 8},
		{Attr: 4, Kind: KindFloat, Size: 4},
		{Attr: 5, Kind: KindStringSlice},
		{Attr: 6, Kind: KindUint, Size: 2},
		{Attr: 7, Kind: KindString},
	}, Return: []Fetch{{Attr: 8, Kind: KindString}, {Attr: 9, Kind: KindInt, Size: 8}}}
	raw := newRecord(EventSpan, 1).entry(
		packed(KindString, 6, 0, "gpt-4o"),
		pscalar(KindInt, 0xdeadbeef_fffffffe), // register garbage above the low 4 bytes
		pscalar(KindBool, 0x0101),
		pscalar(KindFloat, math.Float64bits(0.75)),
		pscalar(KindFloat, uint64(math.Float32bits(-1.5))),
		packed(KindStringSlice, 9, valTruncated, "abcd", 1, 3),
		pscalar(KindUint, 0x12345),
		packed(KindString, 0, valMissing, ""),
	).ret(packed(KindString, 300, valTruncated, "the answer, cut"), pscalar(KindInt, 7)).bytes()

	d := decoder{probes: []*Resolved{nil, p}, monoToWall: 1_000_000_000_000_000_000}
	ev, err := d.decode(raw)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if ev.Kind != EventSpan || ev.Probe != p || ev.PID != 42 || ev.TID != 43 || ev.Goroutine != 0xc000001000 {
		t.Errorf("header = %v %p %d %d %#x", ev.Kind, ev.Probe, ev.PID, ev.TID, ev.Goroutine)
	}
	if want := time.Unix(0, 1_000_000_005_000_000_000); !ev.Start.Equal(want) {
		t.Errorf("start = %v, want %v", ev.Start, want)
	}
	if want := time.Unix(0, 1_000_000_005_000_000_700); !ev.Time.Equal(want) {
		t.Errorf("end = %v, want %v", ev.Time, want)
	}
	wantTrace := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	if ev.TraceID != wantTrace || ev.SpanID != [8]byte{0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18} ||
		ev.ParentSpanID != [8]byte{0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28} {
		t.Errorf("ids = %x %x %x", ev.TraceID, ev.SpanID, ev.ParentSpanID)
	}
	if !ev.Sampled || ev.RemoteParent || ev.EntryLost {
		t.Errorf("flags: sampled %v remote %v entry lost %v", ev.Sampled, ev.RemoteParent, ev.EntryLost)
	}
	v := ev.EntryValues
	if len(v) != 8 {
		t.Fatalf("%d entry values, want 8", len(v))
	}
	if v[0].Str != "gpt-4o" || v[0].Truncated {
		t.Errorf("string = %+v", v[0])
	}
	if v[1].Int != -2 {
		t.Errorf("int32 = %d, want -2", v[1].Int)
	}
	if !v[2].Bool {
		t.Errorf("bool = false, want true")
	}
	if v[3].Float != 0.75 || v[4].Float != -1.5 {
		t.Errorf("floats = %v %v", v[3].Float, v[4].Float)
	}
	if len(v[5].Strs) != 2 || v[5].Strs[0] != "a" || v[5].Strs[1] != "bcd" || !v[5].Truncated {
		t.Errorf("list = %+v", v[5])
	}
	if v[6].Uint != 0x2345 {
		t.Errorf("uint16 = %#x, want 0x2345", v[6].Uint)
	}
	if !v[7].Missing || v[7].Str != "" {
		t.Errorf("missing = %+v", v[7])
	}
	r := ev.Values
	if len(r) != 2 || r[0].Str != "the answer, cut" || !r[0].Truncated || r[1].Int != 7 {
		t.Errorf("return values = %+v", r)
	}
	// The record is as long as what it carries.
	if len(raw) >= evLen+10*valSize/2 {
		t.Errorf("record of %d bytes for ten small values", len(raw))
	}
}

func TestDecodeEntryLost(t *testing.T) {
	p := &Resolved{ID: 0, Spec: Probe{Symbol: "main.f"}, ParentID: -1, Entry: []Fetch{{Kind: KindInt, Size: 8}, {Kind: KindString}}}
	rec := newRecord(EventAbandoned, 0)
	rec.b[evFlags] |= flagEntryLost
	d := decoder{probes: []*Resolved{p}}
	ev, err := d.decode(rec.bytes())
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if ev.Kind != EventAbandoned || !ev.EntryLost || len(ev.EntryValues) != 2 || !ev.EntryValues[0].Missing || !ev.EntryValues[1].Missing || len(ev.Values) != 0 {
		t.Errorf("abandoned with lost entry values: %+v", ev)
	}
}

func errValue(itab uint64, msg string) []byte {
	v := packed(KindError, itab, 0, msg)
	binary.LittleEndian.PutUint64(v[valWord2:], 0xc000100000)
	return v
}

func TestDecodeReturnError(t *testing.T) {
	errFetch := Fetch{Attr: -1, Kind: KindError, Loc: Location{InRegs: true, NRegs: 2, Regs: [3]Reg{RegRBX, RegRCX}}}
	p := &Resolved{ID: 0, Spec: Probe{Symbol: "main.g"}, ParentID: -1, Error: &errFetch}
	types := map[uint64]string{0x1000: "*errors.errorString", 0x2000: "*main.customErr"}
	d := decoder{probes: []*Resolved{p}, itabType: func(itab uint64) string { return types[itab] }}

	for _, c := range []struct {
		name string
		itab uint64
		want ErrorValue
	}{
		{"nil", 0, ErrorValue{}},
		{"errorString", 0x1000, ErrorValue{Failed: true, Type: "*errors.errorString", Message: "boom"}},
		// The kernel read bytes behind the data word, but this type's first
		// field is not known to be its message: they must not be shown.
		{"custom", 0x2000, ErrorValue{Failed: true, Type: "*main.customErr"}},
		{"unknown", 0x3000, ErrorValue{Failed: true}},
	} {
		raw := newRecord(EventSpan, 0).err(errValue(c.itab, "boom")).bytes()
		got, err := d.decode(raw)
		if err != nil {
			t.Fatalf("%s: decode: %v", c.name, err)
		}
		if got.Err != c.want {
			t.Errorf("%s: error = %+v, want %+v", c.name, got.Err, c.want)
		}
	}
}

func TestDecodeErrorRules(t *testing.T) {
	ten := int64(10)
	for _, c := range []struct {
		name string
		kind ValueKind
		rule ErrorRule
		word uint64
		want bool
	}{
		{"bool default true", KindBool, ErrorRule{}, 1, true},
		{"bool default false value", KindBool, ErrorRule{}, 0, false},
		{"bool equals false", KindBool, ErrorRule{Equals: false}, 0, true},
		{"int equals", KindInt, ErrorRule{Equals: 3}, 3, true},
		{"int not equal", KindInt, ErrorRule{Equals: 3}, 4, false},
		{"int at least", KindInt, ErrorRule{AtLeast: &ten}, 12, true},
		{"int below", KindInt, ErrorRule{AtLeast: &ten}, 9, false},
		{"negative int", KindInt, ErrorRule{Equals: -1}, math.MaxUint64, true},
	} {
		f := Fetch{Attr: -1, Kind: c.kind, Size: 8}
		rule := c.rule
		p := &Resolved{Spec: Probe{Symbol: "main.h", Error: &rule}, ParentID: -1, Error: &f}
		raw := newRecord(EventSpan, 0).err(pscalar(c.kind, c.word)).bytes()
		d := decoder{probes: []*Resolved{p}}
		got, err := d.decode(raw)
		if err != nil {
			t.Fatalf("%s: decode: %v", c.name, err)
		}
		if got.Err.Failed != c.want {
			t.Errorf("%s: failed = %v, want %v", c.name, got.Err.Failed, c.want)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	errFetch := Fetch{Attr: -1, Kind: KindBool, Size: 1}
	p := &Resolved{ID: 0, Spec: Probe{Symbol: "main.f"}, ParentID: -1, Entry: []Fetch{{Kind: KindInt, Size: 8}}, Error: &errFetch}
	d := decoder{probes: []*Resolved{p}}
	good := func() *record { return newRecord(EventSpan, 0).entry(pscalar(KindInt, 1)).err(pscalar(KindBool, 0)) }
	if _, err := d.decode(good().bytes()); err != nil {
		t.Fatalf("good record: %v", err)
	}
	hugeList := packed(KindStringSlice, 0, 0, "")
	hugeList[valLen] = MaxListElems + 1
	longStr := packed(KindString, 0, 0, "ab")
	binary.LittleEndian.PutUint16(longStr[valLen:], 200)
	for name, raw := range map[string][]byte{
		"short":          make([]byte, evLen-1),
		"unknown probe":  newRecord(EventSpan, 7).entry(pscalar(KindInt, 1)).err(pscalar(KindBool, 0)).bytes(),
		"bad kind":       newRecord(EventEntry, 0).entry(pscalar(KindInt, 1)).bytes(),
		"value count":    newRecord(EventSpan, 0).entry(pscalar(KindInt, 1), pscalar(KindInt, 2)).err(pscalar(KindBool, 0)).bytes(),
		"return count":   newRecord(EventSpan, 0).entry(pscalar(KindInt, 1)).ret(pscalar(KindInt, 2)).err(pscalar(KindBool, 0)).bytes(),
		"no error value": newRecord(EventSpan, 0).entry(pscalar(KindInt, 1)).bytes(),
		"size past end":  func() []byte { b := good().bytes(); return b[:len(b)-8] }(),
		"size too small": func() []byte { b := good().bytes(); binary.LittleEndian.PutUint16(b[evSize:], evLen-1); return b }(),
		"entry len":      func() []byte { b := good().bytes(); binary.LittleEndian.PutUint16(b[evEntryLen:], 200); return b }(),
		"entry len gap": func() []byte {
			b := good().bytes()
			binary.LittleEndian.PutUint16(b[evEntryLen:], valData+16)
			return b
		}(),
		"list too long": newRecord(EventSpan, 0).entry(hugeList).err(pscalar(KindBool, 0)).bytes(),
		"string past":   newRecord(EventSpan, 0).entry(pscalar(KindInt, 1)).err(longStr).bytes(),
	} {
		if _, err := d.decode(raw); !errors.Is(err, ErrBadEvent) {
			t.Errorf("%s: err = %v, want ErrBadEvent", name, err)
		}
	}
	ab := newRecord(EventAbandoned, 0).entry(pscalar(KindInt, 5)).bytes()
	if ev, err := d.decode(ab); err != nil || ev.Kind != EventAbandoned || len(ev.Values) != 0 || ev.EntryValues[0].Int != 5 {
		t.Errorf("abandoned: %+v, %v", ev, err)
	}
}

func TestEncodeDescriptor(t *testing.T) {
	errFetch := Fetch{Attr: -1, Kind: KindError, Loc: Location{InRegs: true, NRegs: 2, Regs: [3]Reg{RegRBX, RegRCX}}}
	p := &Resolved{ID: 3, Spec: Probe{Symbol: "main.f"}, ParentID: 1,
		Entry: []Fetch{
			// Resolve gives a string's size as 16; only scalars use Size.
			{Kind: KindString, Size: 16, Loc: Location{InRegs: true, NRegs: 2, Regs: [3]Reg{RegRAX, RegRBX}}},
			{Kind: KindInt, Size: 4, Loc: Location{Base: RegRCX, Offsets: []int64{16, -8, 24}}},
		},
		Return: []Fetch{{Kind: KindBool, Size: 1, Loc: Location{InRegs: true, NRegs: 1, Regs: [3]Reg{RegRAX}}}},
		Error:  &errFetch,
	}
	b, err := encodeDescriptor(p)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	le := binary.LittleEndian
	if len(b) != pdLen || le.Uint32(b[pdNEntry:]) != 2 || le.Uint32(b[pdNReturn:]) != 1 ||
		int32(le.Uint32(b[pdParentID:])) != 1 || le.Uint32(b[pdHasError:]) != 1 {
		t.Fatalf("header = % x", b[:16])
	}
	e0 := b[pdEntry:]
	if e0[fdKind] != byte(KindString) || e0[fdInRegs] != 1 || e0[fdNRegs] != 2 || e0[fdRegs] != byte(RegRAX) || e0[fdRegs+1] != byte(RegRBX) {
		t.Errorf("entry 0 = % x", e0[:fdLen])
	}
	e1 := b[pdEntry+fdLen:]
	if e1[fdKind] != byte(KindInt) || e1[fdSize] != 4 || e1[fdInRegs] != 0 || e1[fdBase] != byte(RegRCX) || e1[fdNOffsets] != 3 ||
		int64(le.Uint64(e1[fdOffsets+8:])) != -8 || le.Uint64(e1[fdOffsets+16:]) != 24 {
		t.Errorf("entry 1 = % x", e1[:fdLen])
	}
	if r := b[pdReturn:]; r[fdKind] != byte(KindBool) || r[fdRegs] != byte(RegRAX) {
		t.Errorf("return 0 = % x", r[:fdLen])
	}
	if e := b[pdErr:]; e[fdKind] != byte(KindError) || e[fdRegs+1] != byte(RegRCX) {
		t.Errorf("error = % x", e[:fdLen])
	}

	for name, bad := range map[string]Fetch{
		"float in register": {Kind: KindFloat, Size: 8, Loc: Location{InRegs: true, NRegs: 1}},
		"too many offsets":  {Kind: KindInt, Size: 8, Loc: Location{Offsets: []int64{0, 0, 0, 0, 0}}},
		"bad register":      {Kind: KindInt, Size: 8, Loc: Location{InRegs: true, NRegs: 1, Regs: [3]Reg{NumRegs}}},
		"no registers":      {Kind: KindInt, Size: 8, Loc: Location{InRegs: true}},
		"bad kind":          {Kind: 0},
		"wide scalar":       {Kind: KindInt, Size: 16, Loc: Location{InRegs: true, NRegs: 1}},
	} {
		q := &Resolved{Spec: Probe{Symbol: "main.bad"}, ParentID: -1, Entry: []Fetch{bad}}
		if _, err := encodeDescriptor(q); !errors.Is(err, ErrKernelLimit) {
			t.Errorf("%s: err = %v, want ErrKernelLimit", name, err)
		}
	}
	many := &Resolved{Spec: Probe{Symbol: "main.many"}, ParentID: -1, Entry: make([]Fetch, MaxFetches+1)}
	if _, err := encodeDescriptor(many); !errors.Is(err, ErrKernelLimit) {
		t.Errorf("too many fetches: err = %v, want ErrKernelLimit", err)
	}
}

func TestCheckOptions(t *testing.T) {
	ring, bound, err := checkOptions(Options{})
	if err != nil || ring != DefaultRingBufferBytes || bound != 1<<63 {
		t.Errorf("zero options: %d %#x %v", ring, bound, err)
	}
	if _, bound, _ := checkOptions(Options{SampleRatio: Ratio(0)}); bound != 0 {
		t.Errorf("ratio 0: bound %#x, want 0", bound)
	}
	if _, bound, _ := checkOptions(Options{SampleRatio: Ratio(0.25)}); bound != 1<<61 {
		t.Errorf("ratio 0.25: bound %#x, want 1<<61", bound)
	}
	for name, o := range map[string]Options{
		"ring not power of two": {RingBufferBytes: 3 << 20},
		"ring too small":        {RingBufferBytes: 64},
		"ratio above 1":         {SampleRatio: Ratio(1.5)},
		"ratio NaN":             {SampleRatio: Ratio(math.NaN())},
		"placement":             {Placement: 7},
	} {
		if _, _, err := checkOptions(o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: err = %v, want ErrInvalidOptions", name, err)
		}
	}
}

func TestIndexProbes(t *testing.T) {
	a := &Resolved{ID: 2, Spec: Probe{Symbol: "main.a"}}
	b := &Resolved{ID: 0, Spec: Probe{Symbol: "main.b"}}
	byID, err := indexProbes(&Program{Probes: []*Resolved{a, b}})
	if err != nil || len(byID) != 3 || byID[2] != a || byID[0] != b || byID[1] != nil {
		t.Errorf("index: %v %v", byID, err)
	}
	dup := &Resolved{ID: 2, Spec: Probe{Symbol: "main.c"}}
	if _, err := indexProbes(&Program{Probes: []*Resolved{a, dup}}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("duplicate id: %v", err)
	}
	big := &Resolved{ID: MaxProbes, Spec: Probe{Symbol: "main.d"}}
	if _, err := indexProbes(&Program{Probes: []*Resolved{big}}); !errors.Is(err, ErrKernelLimit) {
		t.Errorf("id past the descriptor map: %v", err)
	}
}
