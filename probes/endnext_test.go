package probes

import (
	"strconv"
	"strings"
	"testing"

	"github.com/routerscope/routerscope/internal/testenv"
)

func TestCheckEnd(t *testing.T) {
	for end, ok := range map[string]bool{"": true, "return": true, "next": true, "later": false} {
		c := &specCheck{}
		checkEnd(c, "probes[0]", Probe{End: end})
		if got := c.err() == nil; got != ok {
			t.Errorf("end %q: valid %v, want %v (%v)", end, got, ok, c.err())
		}
	}
	for from, ok := range map[string]bool{
		"end:arg:st.First":     true,
		"end:receiver.Res.X":   true,
		"end:arg:st":           false, // no field to read through the pointer
		"end:return:0.X":       false,
		"end:end:arg:st.First": false,
		"end:duration_ms":      false,
	} {
		s, err := parseSource(from)
		if (err == nil) != ok {
			t.Errorf("%s: err %v, want valid %v", from, err, ok)
			continue
		}
		if ok && (!s.end || !s.atReturn() || s.String() != from) {
			t.Errorf("%s: parsed %+v (%s)", from, s, s.String())
		}
	}
	var e endSources
	ret, _ := parseSource("return:0.X")
	end, _ := parseSource("end:arg:st.X")
	e.add(end)
	if err := e.check(Probe{End: EndNext}); err != nil {
		t.Errorf("end: next with end: sources: %v", err)
	}
	e.add(ret)
	if err := e.check(Probe{}); err == nil || !strings.Contains(err.Error(), "one way") {
		t.Errorf("mixed end sources: %v", err)
	}
	e = endSources{}
	e.add(ret)
	if err := e.check(Probe{End: EndNext}); err == nil {
		t.Errorf("end: next reading return:0: no error")
	}
}

// TestCaptureEndNext: stages of an end: next probe end where the next
// sibling starts or the parent returns, with their results read then
// through the state pointer captured at entry, and no RET uprobe; in RET
// mode the same end: values are read at each stage's own RETs.
func TestCaptureEndNext(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	for _, next := range []bool{true, false} {
		s, s1, s2 := pipelineProbes(t, bin, next)
		s2.Error = &Fetch{Attr: AttrErrorRule, Kind: KindError, Loc: inMem(RegRAX, 24)}
		ss := attachSession(t, s, startTraced(t, bin), DefaultOptions())
		st := ss.tr.Stats()
		if u := st.Probes[s1.ID].Uprobes; next && u != 1 || !next && u != 1+len(s1.ReturnOffsets) {
			t.Errorf("end next %v: stage1 has %d uprobes", next, u)
		}

		evs := ss.run("pipeline 3")
		expect(t, evs, "entry main.pipeline", "entry main.stage1", "return main.stage1",
			"entry main.stage2", "return main.stage2", "return main.pipeline")
		root, e1, r1, e2, r2 := evs[0], evs[1], evs[2], evs[3], evs[4]
		if e1.ParentSpanID != root.SpanID || e2.ParentSpanID != root.SpanID || r1.SpanID != e1.SpanID || r2.SpanID != e2.SpanID {
			t.Errorf("end next %v: nesting:\n%s", next, summary(evs))
		}
		if r1.Values[0].Int != 30 || r2.Values[0].Str != "s3" || r2.Err.Failed {
			t.Errorf("end next %v: end values %+v %+v err %+v", next, r1.Values, r2.Values, r2.Err)
		}
		if next && (r1.Time.After(e2.Time) || r2.Time.After(evs[5].Time)) {
			t.Errorf("stage ends past the next start or the parent's end:\n%s", summary(evs))
		}

		evs = ss.run("pipeline -2")
		if len(evs) != 6 || !evs[4].Err.Failed || evs[4].Err.Message != "negative" || evs[2].Values[0].Int != -20 {
			t.Errorf("end next %v: failing stage:\n%s", next, summary(evs))
		}
		if p := ss.tr.Stats().Probes[s1.ID]; p.Returns != 2 || p.Abandoned != 0 || p.Emitted != 2 {
			t.Errorf("end next %v: stage1 stats %+v", next, p)
		}
		ss.tr.Close()
	}
}

func TestResolveEndNext(t *testing.T) {
	b, err := OpenBinary(tracedBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	spec, err := ParseSpec([]byte(`probes:
  - symbol: main.stage2
    span: stage2
    end: next
    attributes:
      - {name: second, from: "end:arg:st.Second"}
      - {name: n, from: arg:n}
    error: {from: "end:arg:st.Err"}
  - symbol: main.stage1
    span: stage1
    attributes:
      - {name: first, from: "end:arg:st.First"}
`), "end.yaml")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	prog, err := Resolve(b, spec)
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	s2, s1 := prog.Probes[0], prog.Probes[1]
	if !s2.EndNext || !s2.EndFromEntry || len(s2.Entry) != 1 || len(s2.Return) != 1 || s2.Error == nil {
		t.Errorf("stage2: %+v", s2)
	}
	if s2.Return[0].Kind != KindString || s2.Return[0].Loc.InRegs || s2.Return[0].Loc.Base != RegRAX || s2.Return[0].Loc.Offsets[0] != 8 {
		t.Errorf("stage2 end value: %+v", s2.Return[0])
	}
	if s1.EndNext || !s1.EndFromEntry || len(s1.Return) != 1 {
		t.Errorf("stage1 (RET mode, end: values): %+v", s1)
	}

	for name, yml := range map[string]string{
		"next reads return": "probes:\n  - {symbol: main.handle, span: h, end: next, attributes: [{name: t, from: return:0.Tokens}]}\n",
		"mixed":             "probes:\n  - {symbol: main.handle, span: h, attributes: [{name: t, from: return:0.Tokens}, {name: m, from: \"end:arg:req.Model\"}]}\n",
	} {
		spec, err := ParseSpec([]byte(yml), "bad.yaml")
		if err != nil {
			t.Fatalf("%s: parse: %v", name, err)
		}
		if _, err := Resolve(b, spec); err == nil {
			t.Errorf("%s: resolved", name)
		}
	}
	if _, err := ParseSpec([]byte("probes:\n  - {symbol: main.handle, span: h, end: later}\n"), "bad.yaml"); err == nil {
		t.Errorf("end: later parsed")
	}
}

// TestCaptureLargeEntryValues: a span whose entry values take more than
// the small store's 416 bytes keeps them in the large one, whole.
func TestCaptureLargeEntryValues(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	s := newProbeSet(t, bin)
	handle := s.add("main.handle")
	// Request.Tags ([]string at offset 40): three elements, 35 bytes.
	for i := range MaxFetches {
		handle.Entry = append(handle.Entry, Fetch{Attr: i, Kind: KindStringSlice, Loc: inMem(RegRAX, 40)})
	}
	ss := attachSession(t, s, startTraced(t, bin), DefaultOptions())
	evs := ss.run("handle gpt")
	if len(evs) != 2 || len(evs[0].Values) != MaxFetches {
		t.Fatalf("spans:\n%s", summary(evs))
	}
	for i, v := range evs[0].Values {
		if len(v.Strs) != 3 || v.Strs[0] != "a" || v.Strs[1] != "bb" || len(v.Strs[2]) != MaxElemBytes {
			t.Errorf("value %d: %+v", i, v)
		}
	}
}

// TestCaptureEndNextStackMoved: a per-request state kept on the goroutine's
// stack (escape analysis keeps it there when nothing retains it) moves
// when the stack grows. A stage's end values must be read where the state
// is when the span ends, not at the address its pointer had at entry: the
// old stack is freed and reused by other goroutines, so reading it there
// gives a stale value or another request's.
func TestCaptureEndNextStackMoved(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	for _, next := range []bool{true, false} {
		s, _, _ := pipelineProbes(t, bin, next)
		ss := attachSession(t, s, startTraced(t, bin), DefaultOptions())
		for _, n := range []int{3, 7} {
			evs := ss.run("pipeline-grow " + strconv.Itoa(n))
			expect(t, evs, "entry main.pipeline", "entry main.stage1", "return main.stage1",
				"entry main.stage2", "return main.stage2", "return main.pipeline")
			r1, r2 := evs[2], evs[4]
			if len(r1.Values) != 1 || r1.Values[0].Int != int64(n*10) || r1.Values[0].Missing {
				t.Errorf("end next %v, n %d: stage1 First (read after its stack moved) = %+v, want %d", next, n, r1.Values, n*10)
			}
			if len(r2.Values) != 1 || r2.Values[0].Str != "s"+strconv.Itoa(n) {
				t.Errorf("end next %v, n %d: stage2 Second = %+v, want s%d", next, n, r2.Values, n)
			}
		}
		ss.tr.Close()
	}
}

// pipelineProbes probes main.pipeline and its two stages, whose ends are
// read through the state pointer taken at entry: at the next sibling's
// start (next) or at the stage's own RETs. stage(st *Stages, n int): st in
// RAX; Stages is {First int; Second string; Err error}.
func pipelineProbes(t *testing.T, bin string, next bool) (s *probeSet, s1, s2 *Resolved) {
	t.Helper()
	s = newProbeSet(t, bin)
	s.add("main.pipeline")
	s1 = s.add("main.stage1")
	s2 = s.add("main.stage2")
	for _, p := range []*Resolved{s1, s2} {
		p.EndNext, p.EndFromEntry = next, true
	}
	s1.Return = []Fetch{{Attr: 0, Kind: KindInt, Size: 8, Loc: inMem(RegRAX, 0)}}
	s2.Return = []Fetch{{Attr: 0, Kind: KindString, Loc: inMem(RegRAX, 8)}}
	return s, s1, s2
}

func TestCheckEndAt(t *testing.T) {
	const at = "net/http.(*response).finishRequest"
	for _, tc := range []struct {
		p    Probe
		want string // "" when valid
	}{
		{Probe{Symbol: "main.f", EndAt: at}, ""},
		{Probe{Symbol: "main.f", End: EndNext, EndAt: at}, ""},
		{Probe{Symbol: "main.f", End: EndReturn, EndAt: at}, "without a RET"},
		{Probe{Symbol: "main.f", IntoParent: true, EndAt: at}, "into_parent"},
		{Probe{Symbol: "main.f", EndAt: "main.f"}, "its own span"},
	} {
		c := &specCheck{}
		checkEnd(c, "probes[0]", tc.p)
		err := c.err()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.p, err, tc.want)
		}
	}
	if !endsNext(Probe{EndAt: at}) || endsNext(Probe{}) {
		t.Error("endsNext: end_at is an end: next form")
	}
	var e endSources
	ret, _ := parseSource("return:0.X")
	e.add(ret)
	if err := e.check(Probe{EndAt: at}); err == nil {
		t.Error("end_at reading return:0: no error")
	}
	spec := []byte(`probes:
  - {symbol: main.a, span: a, end_at: main.b}
  - {symbol: main.b, span: b}
`)
	if _, err := ParseSpec(spec, "x.yaml"); err == nil || !strings.Contains(err.Error(), "probed by probes[1]") {
		t.Errorf("end_at on another probe's symbol: %v", err)
	}
}

// TestCaptureEndAt: a span with end_at ends at the entry of that function
// when its caller runs it after the span's function returned, finished,
// with its end values read then; an end_at function entered deeper (from
// inside the span's function) ends nothing. main.pipeline calls stage1
// then stage2, which fill a Stages (First, then Second); main.mark, at
// pipeline's depth, runs after each command.
func TestCaptureEndAt(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	b, err := OpenBinary(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	endAt := func(p *Resolved, sym string) {
		fn, err := b.Function(sym)
		if err != nil {
			t.Fatal(err)
		}
		p.Spec.EndAt, p.EndAt, p.EndNext, p.EndFromEntry = sym, fn, true, true
		p.Return = []Fetch{
			{Attr: 0, Kind: KindInt, Size: 8, Loc: inMem(RegRAX, 0)},
			{Attr: 1, Kind: KindString, Loc: inMem(RegRAX, 8)},
		}
	}

	// stage1 ends where pipeline calls stage2: First is set, Second not yet.
	s := newProbeSet(t, bin)
	s1 := s.add("main.stage1")
	endAt(s1, "main.stage2")
	ss := attachSession(t, s, startTraced(t, bin), DefaultOptions())
	evs := ss.run("pipeline 3")
	expect(t, evs, "entry main.stage1", "return main.stage1")
	if r := evs[1]; r.Kind != EventReturn || len(r.Values) != 2 || r.Values[0].Int != 30 || r.Values[1].Str != "" {
		t.Errorf("stage1 did not end at stage2's entry: %s", summary(evs))
	}
	st := ss.tr.Stats().Probes[s1.ID]
	if st.Uprobes != 2 || st.EndAtUprobes != 1 || st.EndAt != "main.stage2" || st.EndAtHits != 1 || st.Returns != 1 || st.Abandoned != 0 || st.Unmatched != 0 {
		t.Errorf("stage1 stats %+v", st)
	}
	ss.tr.Close()

	// pipeline's end_at, stage1, runs inside it: the span ends later (at
	// main.mark's entry, as any end: next span whose frame is gone), after
	// stage2 set Second.
	s = newProbeSet(t, bin)
	pl := s.add("main.pipeline")
	endAt(pl, "main.stage1")
	ss = attachSession(t, s, startTraced(t, bin), DefaultOptions())
	evs = ss.run("pipeline 4")
	expect(t, evs, "entry main.pipeline", "return main.pipeline")
	if r := evs[1]; r.Kind != EventReturn || len(r.Values) != 2 || r.Values[0].Int != 40 || r.Values[1].Str != "s4" {
		t.Errorf("pipeline ended at its end_at called from inside it: %s", summary(evs))
	}
	if st := ss.tr.Stats().Probes[pl.ID]; st.EndAtHits != 1 || st.Returns != 1 || st.Abandoned != 0 {
		t.Errorf("pipeline stats %+v", st)
	}
	ss.tr.Close()
}
