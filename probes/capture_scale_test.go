package probes

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/routerscope/routerscope/internal/testenv"
)

// defaultMemoryBudget is what the default sizes promise: the maps and the
// ring buffer of one Capture in at most 32 MiB, however many processes.
const defaultMemoryBudget = 32 << 20

// TestCaptureSixtyFourProcesses starts 64 copies of the fixture, attaches
// all of them to one Capture with the default sizes, runs a request in
// each and checks its span tree, and checks the kernel memory of the maps
// (bpf_map_info memlock) stays within the default budget; it logs the
// memory at 1, 8 and 64 processes (make memory prints that table).
func TestCaptureSixtyFourProcesses(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	s := newProbeSet(t, bin)
	handle := s.add("main.handle")
	handle.Entry = []Fetch{{Attr: 0, Kind: KindString, Loc: inMem(RegRAX, 0)}}
	classify := s.add("main.classify")
	classify.Entry = []Fetch{{Attr: 0, Kind: KindString, Loc: inRegs(RegRAX, RegRBX)}}
	prog := s.program()
	c := newTestCapture(t, CaptureOptions{})
	// Load the injector as a router's attach would (the fixture has no
	// net/http), without a cgroup, so its maps are measured too.
	inj, err := newInjector(c.maps.InjectTids, c.maps.TraceStates, c.sizes)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.injector = inj
	c.mu.Unlock()

	const n = 64
	report := []string{"processes | kernel maps and ring (MiB) | uprobe links | agent Go heap in use (MiB) | attach time (ms, last)"}
	var slowest time.Duration
	for i := range n {
		p := startTraced(t, bin)
		start := time.Now()
		tr, err := c.Attach(t.Context(), prog, p.cmd.Process.Pid, DefaultOptions())
		took := time.Since(start)
		slowest = max(slowest, took)
		if err != nil {
			t.Fatalf("attach process %d: %v", i, err)
		}
		defer tr.Close()
		checkHandleTree(t, p, tr, handle, classify, fmt.Sprintf("p%d", i))
		if k := i + 1; k == 1 || k == 8 || k == 64 {
			mem, err := c.MemoryBytes()
			if err != nil {
				t.Fatal(err)
			}
			links := 0
			c.mu.Lock()
			for o := range c.tracers {
				links += len(o.links)
			}
			c.mu.Unlock()
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			report = append(report, fmt.Sprintf("%d | %.1f | %d | %.1f | %d", k, float64(mem)/(1<<20), links,
				float64(ms.HeapInuse)/(1<<20), took.Milliseconds()))
			if mem > defaultMemoryBudget {
				t.Errorf("%d processes: the maps and ring hold %d bytes, over the default budget of %d", k, mem, defaultMemoryBudget)
			}
		}
	}
	// A /metrics scrape reads every counter and counts every hash map's keys.
	statsStart := time.Now()
	st := c.Stats()
	statsTook := time.Since(statsStart)
	if len(st.Probes) != 2*n {
		t.Errorf("Capture.Stats lists %d process-probe counters, want %d", len(st.Probes), 2*n)
	}
	maps, _ := c.Memory()
	var perMap []string
	for _, m := range maps {
		perMap = append(perMap, fmt.Sprintf("%s %d entries %d KiB", m.Name, m.MaxEntries, m.Bytes>>10))
	}
	t.Logf("memory by process count (slowest attach %v, Capture.Stats %v):\n%s\nper map: %s", slowest.Round(time.Millisecond),
		statsTook.Round(time.Microsecond), strings.Join(report, "\n"), strings.Join(perMap, "; "))
	if got := c.Lost(); got != 0 {
		t.Errorf("%d records lost", got)
	}
}

// checkHandleTree runs "handle model" in p and checks the two spans it
// makes arrive on tr as a tree: classify a child of handle, one trace, the
// process's own values.
func checkHandleTree(t *testing.T, p *traced, tr *Tracer, handle, classify *Resolved, model string) {
	t.Helper()
	p.do(t, "handle "+model)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := map[*Resolved]Event{}
	for len(got) < 2 {
		ev, err := tr.Read(ctx)
		if err != nil {
			t.Fatalf("%s: read spans: %v (got %d)", model, err, len(got))
		}
		if ev.Kind != EventSpan || (ev.Probe != handle && ev.Probe != classify) {
			t.Fatalf("%s: unexpected record %v of %s", model, ev.Kind, ev.Probe.Spec.Symbol)
		}
		got[ev.Probe] = ev
	}
	h, c := got[handle], got[classify]
	pid := uint32(p.cmd.Process.Pid)
	if h.PID != pid || c.PID != pid || h.ParentSpanID != zeroSpan || c.ParentSpanID != h.SpanID || c.TraceID != h.TraceID {
		t.Errorf("%s: not one tree of process %d:\n%s", model, pid, summary([]Event{h, c}))
	}
	if len(h.EntryValues) != 1 || h.EntryValues[0].Str != model || len(c.EntryValues) != 1 || c.EntryValues[0].Str != model {
		t.Errorf("%s: entry values %+v and %+v", model, h.EntryValues, c.EntryValues)
	}
}
