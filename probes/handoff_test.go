package probes

import (
	"testing"
)

func TestHandOffParallel(t *testing.T) {
	requireRoot(t)
	bin := tracedBinary(t)
	const n = 50
	for _, handOff := range []bool{true, false} {
		s := newProbeSet(t, bin)
		par := s.add("main.parallel")
		work := s.add("main.work")
		work.Entry = []Fetch{{Attr: 0, Kind: KindInt, Size: 8, Loc: inRegs(RegRAX)}}
		work.Return = []Fetch{{Attr: 1, Kind: KindInt, Size: 8, Loc: inRegs(RegRAX)}}
		ss := attachSession(t, s, startTraced(t, bin), Options{HandOff: handOff})
		evs := ss.run("parallel 50")
		if len(evs) != 2+2*n || evs[0].Probe != par || evs[0].Kind != EventEntry || evs[len(evs)-1].Probe != par {
			t.Fatalf("hand-off %v: want parallel around %d work spans:\n%s", handOff, n, summary(evs))
		}
		root := evs[0]
		entries := map[[8]byte]int64{}
		seen := map[int64]bool{}
		for _, e := range evs[1 : len(evs)-1] {
			if e.Probe != work {
				t.Fatalf("hand-off %v: unexpected %s", handOff, summary([]Event{e}))
			}
			if e.Goroutine == root.Goroutine {
				t.Errorf("work ran on the parallel goroutine")
			}
			switch e.Kind {
			case EventEntry:
				i := e.Values[0].Int
				if seen[i] || i < 0 || i >= n {
					t.Errorf("work(%d) twice or out of range", i)
				}
				seen[i] = true
				entries[e.SpanID] = i
				if handOff && (e.ParentSpanID != root.SpanID || e.TraceID != root.TraceID) {
					t.Errorf("work(%d) not a child of parallel: %s", i, summary([]Event{e}))
				}
				if !handOff && (e.ParentSpanID != zeroSpan || e.TraceID == root.TraceID) {
					t.Errorf("work(%d) without hand-off should be a root: %s", i, summary([]Event{e}))
				}
			case EventReturn:
				i, ok := entries[e.SpanID]
				if !ok || e.Values[0].Int != i*i {
					t.Errorf("return of span %x: value %d, entry found %v (work(%d))", e.SpanID, e.Values[0].Int, ok, i)
				}
				delete(entries, e.SpanID)
			default:
				t.Errorf("unexpected %s", summary([]Event{e}))
			}
		}
		if len(seen) != n || len(entries) != 0 {
			t.Errorf("hand-off %v: %d work calls seen, %d spans left open", handOff, len(seen), len(entries))
		}
		ss.tr.Close()
	}
}

// TestHandOffBounded: a pooled worker started inside a span inherits it only
// while it is open; afterwards its tasks start traces of their own.
func TestHandOffBounded(t *testing.T) {
	requireRoot(t)
	bin := tracedBinary(t)
	s := newProbeSet(t, bin)
	open := s.add("main.openPool")
	task := s.add("main.poolTask")
	task.Entry = []Fetch{{Attr: 0, Kind: KindInt, Size: 8, Loc: inRegs(RegRAX)}}
	submit := s.add("main.submit")
	ss := attachSession(t, s, startTraced(t, bin), DefaultOptions())

	evs := ss.run("startpool 1")
	expect(t, evs, "entry main.openPool", "entry main.poolTask", "return main.poolTask", "return main.openPool")
	if evs[1].ParentSpanID != evs[0].SpanID || evs[1].TraceID != evs[0].TraceID || evs[1].Goroutine == evs[0].Goroutine {
		t.Errorf("first task should be a child of openPool on another goroutine:\n%s", summary(evs))
	}
	openTrace, worker := evs[0].TraceID, evs[1].Goroutine

	for j := range 2 {
		evs = ss.run("submit 2")
		expect(t, evs, "entry main.submit", "entry main.poolTask", "return main.poolTask", "return main.submit")
		te := evs[1]
		if te.Goroutine != worker {
			t.Fatalf("task ran on goroutine %#x, the worker is %#x", te.Goroutine, worker)
		}
		if te.ParentSpanID != zeroSpan || te.TraceID == openTrace || te.TraceID == evs[0].TraceID {
			t.Errorf("submit %d: task after openPool closed should start its own trace:\n%s", j, summary(evs))
		}
	}
	st := ss.tr.Stats()
	if st.Probes[open.ID].Returns != 1 || st.Probes[submit.ID].Returns != 2 || st.Probes[task.ID].Returns != 3 {
		t.Errorf("stats: %+v", st.Probes)
	}
}
