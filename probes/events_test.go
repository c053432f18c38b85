package probes

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"
	"time"
)

// rawEvent builds a struct event record the way the kernel lays it out.
type rawEvent []byte

func newRaw(kind EventKind, probeID uint32, nvalues int) rawEvent {
	b := make(rawEvent, evLen)
	b[evKind] = byte(kind)
	b[evFlags] = flagSampled
	b[evNValues] = byte(nvalues)
	le := binary.LittleEndian
	le.PutUint32(b[evProbeID:], probeID)
	le.PutUint32(b[evPID:], 42)
	le.PutUint32(b[evTID:], 43)
	le.PutUint64(b[evGoroutine:], 0xc000001000)
	le.PutUint64(b[evKtime:], 5_000_000_000)
	le.PutUint64(b[evTraceHi:], 0x0102030405060708)
	le.PutUint64(b[evTraceLo:], 0x090a0b0c0d0e0f10)
	le.PutUint64(b[evSpanID:], 0x1112131415161718)
	le.PutUint64(b[evParentSpanID:], 0x2122232425262728)
	return b
}

func (b rawEvent) value(i int) []byte { return b[evValues+i*valSize:][:valSize] }

func setWord(v []byte, w uint64) { binary.LittleEndian.PutUint64(v[valWord:], w) }

func setString(v []byte, s string, full int, truncated bool) {
	binary.LittleEndian.PutUint64(v[valWord:], uint64(full))
	binary.LittleEndian.PutUint16(v[valLen:], uint16(copy(v[valData:], s)))
	if truncated {
		v[valFlags] |= valTruncated
	}
}

func TestDecodeEntry(t *testing.T) {
	p := &Resolved{ID: 1, Spec: Probe{Symbol: "main.f"}, ParentID: -1, Entry: []Fetch{
		{Attr: 0, Kind: KindString},
		{Attr: 1, Kind: KindInt, Size: 4},
		{Attr: 2, Kind: KindBool, Size: 1},
		{Attr: 3, Kind: KindFloat, Size: 8},
		{Attr: 4, Kind: KindFloat, Size: 4},
		{Attr: 5, Kind: KindStringSlice},
		{Attr: 6, Kind: KindUint, Size: 2},
		{Attr: 7, Kind: KindString},
	}}
	raw := newRaw(EventEntry, 1, len(p.Entry))
	setString(raw.value(0), "gpt-4o", 6, false)
	setWord(raw.value(1), 0xdeadbeef_fffffffe) // register garbage above the low 4 bytes
	setWord(raw.value(2), 0x0101)
	setWord(raw.value(3), math.Float64bits(0.75))
	setWord(raw.value(4), uint64(math.Float32bits(-1.5)))
	lv := raw.value(5)
	setWord(lv, 9)
	binary.LittleEndian.PutUint16(lv[valLen:], 2)
	lv[valElemLen], lv[valElemLen+1] = 1, 3
	lv[valFlags] = valTruncated
	copy(lv[valData:], "a")
	copy(lv[valData+MaxElemBytes:], "bcd")
	setWord(raw.value(6), 0x12345)
	raw.value(7)[valFlags] = valMissing

	d := decoder{probes: []*Resolved{nil, p}, monoToWall: 1_000_000_000_000_000_000}
	ev, err := d.decode(raw[:evErr])
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if ev.Kind != EventEntry || ev.Probe != p || ev.PID != 42 || ev.TID != 43 || ev.Goroutine != 0xc000001000 {
		t.Errorf("header = %v %p %d %d %#x", ev.Kind, ev.Probe, ev.PID, ev.TID, ev.Goroutine)
	}
	if want := time.Unix(0, 1_000_000_005_000_000_000); !ev.Time.Equal(want) {
		t.Errorf("time = %v, want %v", ev.Time, want)
	}
	wantTrace := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	if ev.TraceID != wantTrace || ev.SpanID != [8]byte{0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18} ||
		ev.ParentSpanID != [8]byte{0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28} {
		t.Errorf("ids = %x %x %x", ev.TraceID, ev.SpanID, ev.ParentSpanID)
	}
	if !ev.Sampled || ev.RemoteParent {
		t.Errorf("flags: sampled %v remote %v", ev.Sampled, ev.RemoteParent)
	}
	v := ev.Values
	if len(v) != 8 {
		t.Fatalf("%d values, want 8", len(v))
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
		raw := newRaw(EventReturn, 0, 0)
		ev := raw[evErr:][:valSize]
		setWord(ev, c.itab)
		binary.LittleEndian.PutUint64(ev[valWord2:], 0xc000100000)
		binary.LittleEndian.PutUint16(ev[valLen:], uint16(copy(ev[valData:], "boom")))
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
		raw := newRaw(EventReturn, 0, 0)
		setWord(raw[evErr:], c.word)
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
	p := &Resolved{ID: 0, Spec: Probe{Symbol: "main.f"}, ParentID: -1, Entry: []Fetch{{Kind: KindInt, Size: 8}}}
	d := decoder{probes: []*Resolved{p}}
	for name, raw := range map[string][]byte{
		"short":         make([]byte, evValues-1),
		"unknown probe": newRaw(EventEntry, 7, 1),
		"bad kind":      newRaw(EventKind(9), 0, 1),
		"value count":   newRaw(EventEntry, 0, 3),
		"truncated":     newRaw(EventEntry, 0, 1)[:evValues+10],
	} {
		if _, err := d.decode(raw); !errors.Is(err, ErrBadEvent) {
			t.Errorf("%s: err = %v, want ErrBadEvent", name, err)
		}
	}
	ab := newRaw(EventAbandoned, 0, 0)[:evValues]
	if ev, err := d.decode(ab); err != nil || ev.Kind != EventAbandoned || ev.Values != nil {
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
