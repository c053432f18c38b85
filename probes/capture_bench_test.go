package probes

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// BenchmarkUprobeCall measures what a probed call costs the traced process:
// the fixture calls main.work b.N times, untraced, then with the entry uprobe
// at the prologue (after the stack check, an instruction the kernel
// emulates) and at the first instruction (single-stepped), while a reader
// drains the events. Compare the ns/op of the variants.
func BenchmarkUprobeCall(b *testing.B) {
	requireRoot(b)
	bin := tracedBinary(b)
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
			var wg sync.WaitGroup
			if c.attach {
				s := newProbeSet(b, bin)
				w := s.add("main.work")
				w.Entry = []Fetch{{Attr: 0, Kind: KindInt, Size: 8, Loc: inRegs(RegRAX)}}
				var err error
				tr, err = Attach(s.program(), proc.cmd.Process.Pid, Options{Placement: c.placement, SampleRatio: c.ratio})
				if err != nil {
					b.Fatal(err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						if _, err := tr.Read(context.Background()); errors.Is(err, ErrClosed) {
							return
						}
					}
				}()
			}
			b.ResetTimer()
			proc.do(b, fmt.Sprintf("loop %d", b.N))
			b.StopTimer()
			if tr != nil {
				st := tr.Stats()
				b.ReportMetric(float64(st.Lost), "lost")
				tr.Close()
				wg.Wait()
			}
		})
	}
}
