package probes

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/routerscope/routerscope/internal/testenv"
)

func TestHandOffParallel(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	handOffParallel(t, tracedBinary(t))
}

// handOffParallel: 50 goroutines started inside a span are its children
// with hand-off, roots without.
func handOffParallel(t *testing.T, bin string) {
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
	testenv.RequireBPF(t, "attaching the capture programs")
	handOffBounded(t, tracedBinary(t))
}

func handOffBounded(t *testing.T, bin string) {
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

// TestHandOffUnsampled: goroutines started inside a trace the sampler
// dropped carry the decision on, so at ratio 0.5 a parallel trace is
// reported whole (the root and every work span) or not at all, never as
// work spans of their own.
func TestHandOffUnsampled(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	s := newProbeSet(t, bin)
	par := s.add("main.parallel")
	work := s.add("main.work")
	proc := startTraced(t, bin)
	tr, err := Attach(t.Context(), s.program(), proc.cmd.Process.Pid, Options{HandOff: true, SampleRatio: Ratio(0.5)})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	const runs, n = 20, 5
	for range runs {
		proc.do(t, fmt.Sprintf("parallel %d", n))
	}
	st := tr.Stats()
	var emitted uint64
	for _, p := range st.Probes {
		emitted += p.Emitted
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type counts struct{ par, work int }
	traces := map[[16]byte]*counts{}
	for range emitted {
		e, err := tr.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		c := traces[e.TraceID]
		if c == nil {
			c = &counts{}
			traces[e.TraceID] = c
		}
		switch e.Probe {
		case par:
			c.par++
		case work:
			c.work++
		}
	}
	for id, c := range traces {
		if c.par != 1 || c.work != n {
			t.Errorf("trace %x: %d parallel and %d work spans, want 1 and %d", id, c.par, c.work, n)
		}
	}
	if len(traces) == 0 || len(traces) == runs {
		t.Errorf("%d of %d traces sampled at ratio 0.5", len(traces), runs)
	}
	// Every call was either a span or passed over: unsampled roots and the
	// work goroutines that inherited their decision are opened, not read.
	if p := st.Probes[par.ID]; p.Entries != runs || p.Returns != runs {
		t.Errorf("parallel stats %+v", p)
	}
	if p := st.Probes[work.ID]; p.Entries != runs*n || p.Emitted != uint64(len(traces)*n) {
		t.Errorf("work stats %+v, %d traces sampled", p, len(traces))
	}
}

// TestHandOffGo127 runs the hand-off tests on the traced fixture built
// with Go 1.27, the second release runtime.newproc1's probe is verified on.
func TestHandOffGo127(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	// GOTOOLCHAIN fetches Go 1.27 through the module proxy once.
	bin := fixtureBuild(t, "traced-go1.27", testenv.Build{Pkg: "./testdata/traced", Env: []string{"CGO_ENABLED=0", "GOTOOLCHAIN=go1.27.3"}})
	b, err := OpenBinary(bin)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := b.GoVersion()
	b.Close()
	if !strings.HasPrefix(v, "go1.27") {
		t.Fatalf("fixture built with %q, want go1.27", v)
	}
	t.Run("parallel", func(t *testing.T) { handOffParallel(t, bin) })
	t.Run("bounded", func(t *testing.T) { handOffBounded(t, bin) })
}
