package probes

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/routerscope/routerscope/internal/testenv"
)

// BenchmarkUprobeCall measures what a probed call costs the traced process:
// the fixture calls main.work b.N times, untraced, then with the entry uprobe
// at the prologue (after the stack check, an instruction the kernel
// emulates) and at the first instruction (single-stepped), while a reader
// drains the events. Compare the ns/op of the variants. The kernel's BPF
// run-time statistics give each capture program's own cost per hit
// (entry-ns/hit, return-ns/hit), apart from the trap around it.
func BenchmarkUprobeCall(b *testing.B) {
	bin := runTimeStatsFixture(b)
	for _, c := range []struct {
		name      string
		attach    bool
		placement Placement
		ratio     *float64
	}{
		{"untraced", false, 0, nil},
		{"prologue", true, PlacementPrologue, nil},
		{"symbol", true, PlacementSymbol, nil},
		// Spans tracked in the kernel, no events: the cost of the uprobes
		// and the span stack without the ring buffer and the reader.
		{"prologue-unsampled", true, PlacementPrologue, Ratio(0)},
	} {
		b.Run(c.name, func(b *testing.B) {
			proc := startTraced(b, bin)
			var tr *Tracer
			var drained func()
			if c.attach {
				s := newProbeSet(b, bin)
				w := s.add("main.work")
				w.Entry = []Fetch{{Attr: 0, Kind: KindInt, Size: 8, Loc: inRegs(RegRAX)}}
				var err error
				tr, err = Attach(b.Context(), s.program(), proc.cmd.Process.Pid, Options{Placement: c.placement, SampleRatio: c.ratio})
				if err != nil {
					b.Fatal(err)
				}
				drained = drain(tr)
			}
			b.ResetTimer()
			proc.do(b, fmt.Sprintf("loop %d", b.N))
			b.StopTimer()
			if tr != nil {
				reportTracer(b, tr)
				tr.Close()
				drained()
			}
		})
	}
}

// runTimeStatsFixture gates a benchmark on root, turns the kernel's BPF
// run-time statistics on until it ends, and returns the traced fixture.
func runTimeStatsFixture(b *testing.B) string {
	b.Helper()
	testenv.RequireBPF(b, "attaching the capture programs")
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enable BPF run-time statistics: %v", err)
	}
	b.Cleanup(func() { stats.Close() })
	return tracedBinary(b)
}

// drain reads and drops tr's events until it is closed; the function it
// returns waits for the reader to end.
func drain(tr *Tracer) (wait func()) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			if _, err := tr.Read(context.Background()); errors.Is(err, ErrClosed) {
				return
			}
		}
	})
	return wg.Wait
}

// reportTracer reports the events lost and the entry and return
// programs' run time per hit.
func reportTracer(b *testing.B, tr *Tracer) {
	b.ReportMetric(float64(tr.Stats().Lost), "lost")
	reportRunTime(b, tr.c.progs.entry, "entry-ns/hit")
	reportRunTime(b, tr.c.progs.ret, "return-ns/hit")
}

// reportRunTime reports a program's average run time per hit from the
// kernel's BPF statistics.
func reportRunTime(b *testing.B, p *ebpf.Program, unit string) {
	st, err := p.Stats()
	if err != nil {
		b.Fatalf("program statistics: %v", err)
	}
	if st.RunCount > 0 {
		b.ReportMetric(float64(st.Runtime.Nanoseconds())/float64(st.RunCount), unit)
	}
}

// BenchmarkNestedTrace runs fib(12), 465 nested calls of one probed
// function under a root, per op: in a sampled trace every call is a span;
// in an unsampled one the root is opened and every call under it takes the
// early exit. entry-ns/hit and return-ns/hit are the programs' own cost
// per hit, averaged over the root and the calls under it.
func BenchmarkNestedTrace(b *testing.B) {
	bin := runTimeStatsFixture(b)
	for _, c := range []struct {
		name  string
		ratio *float64
	}{{"sampled", nil}, {"unsampled", Ratio(0)}} {
		b.Run(c.name, func(b *testing.B) {
			proc := startTraced(b, bin)
			s := newProbeSet(b, bin)
			f := s.add("main.fib")
			f.Entry = []Fetch{{Attr: 0, Kind: KindInt, Size: 8, Loc: inRegs(RegRAX)}}
			f.Return = []Fetch{{Attr: 1, Kind: KindInt, Size: 8, Loc: inRegs(RegRAX)}}
			tr, err := Attach(b.Context(), s.program(), proc.cmd.Process.Pid, Options{SampleRatio: c.ratio})
			if err != nil {
				b.Fatal(err)
			}
			drained := drain(tr)
			b.ResetTimer()
			for b.Loop() {
				proc.do(b, "fib 12")
			}
			b.StopTimer()
			reportTracer(b, tr)
			tr.Close()
			drained()
		})
	}
}
