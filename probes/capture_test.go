package probes

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/routerscope/routerscope/internal/testenv"
)

// fibCalls is the number of calls fib(n) makes: 2*F(n+1) - 1.
func fibCalls(n int) uint64 {
	a, b := 0, 1
	for range n + 1 {
		a, b = b, a+b
	}
	return uint64(2*a - 1)
}

// sendCommand runs one fixture command from any goroutine (do needs the
// test's goroutine to fail).
func (p *traced) sendCommand(command string) error {
	if _, err := fmt.Fprintln(p.stdin, command); err != nil {
		return fmt.Errorf("send %q: %w", command, err)
	}
	if !p.out.Scan() || p.out.Text() != "done" {
		return fmt.Errorf("command %q: fixture answered %q %v", command, p.out.Text(), p.out.Err())
	}
	return nil
}

// tracedFixedHeap builds testdata/traced with the heap at the same address
// in every process, as before Go 1.26 randomized its base
// (GOEXPERIMENT=norandomizedheapbase64): goroutines of different processes
// then have the same g addresses, as they do in routers built with older Go.
func tracedFixedHeap(t testing.TB) string {
	t.Helper()
	return fixtureBuild(t, "traced-fixedheap", testenv.Build{Pkg: "./testdata/traced",
		Env: []string{"CGO_ENABLED=0", "GOEXPERIMENT=norandomizedheapbase64"}})
}

// TestCaptureSharedByProcesses: one Capture serves several processes of one
// binary. Their goroutines have the same g addresses in every process (a
// fixed heap base), so recursion running in all of them at once nests
// correctly only when the kernel keys goroutines by process too; each
// Tracer gets its own process's events and counters only.
func TestCaptureSharedByProcesses(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedFixedHeap(t)
	s := newProbeSet(t, bin)
	fib := s.add("main.fib")
	prog := s.program()
	c := newTestCapture(t, CaptureOptions{})

	const n, runs, depth = 4, 3, 10
	want := runs * fibCalls(depth)
	procs := make([]*traced, n)
	tracers := make([]*Tracer, n)
	for i := range n {
		procs[i] = startTraced(t, bin)
		tr, err := c.Attach(t.Context(), prog, procs[i].cmd.Process.Pid, DefaultOptions())
		if err != nil {
			t.Fatalf("attach process %d: %v", i, err)
		}
		defer tr.Close()
		tracers[i] = tr
		if tr.base != tracers[0].base {
			t.Errorf("process %d has probe ids from %d, process 0 from %d: one Program's descriptors are written once", i, tr.base, tracers[0].base)
		}
	}

	type result struct {
		spans, foreign uint64
		goroutines     map[uint64]bool
		err            error
	}
	results := make([]result, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, tr := range tracers {
		r := &results[i]
		r.goroutines = map[uint64]bool{}
		pid := uint32(procs[i].cmd.Process.Pid)
		wg.Go(func() {
			for r.spans < want {
				ev, err := tr.Read(ctx)
				if err != nil {
					r.err = err
					return
				}
				if ev.PID != pid || ev.Probe != fib {
					r.foreign++
					continue
				}
				r.goroutines[ev.Goroutine] = true
				if ev.Kind == EventSpan {
					r.spans++
				}
			}
		})
	}
	var run sync.WaitGroup
	errs := make([]error, n)
	for i, p := range procs {
		run.Go(func() {
			for range runs {
				if err := p.sendCommand(fmt.Sprintf("fib %d", depth)); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	run.Wait()
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		r := results[i]
		if r.err != nil || r.spans != want || r.foreign != 0 {
			t.Errorf("process %d: %d spans, %d events of others, err %v; want %d spans", i, r.spans, r.foreign, r.err, want)
		}
		st := tracers[i].Stats().Probes[fib.ID]
		if st.Entries != want || st.Returns != want || st.Unmatched != 0 || st.Overflow != 0 || st.Abandoned != 0 {
			t.Errorf("process %d counters %+v, want %d entries and returns, nothing unmatched, overflowed or abandoned", i, st, want)
		}
	}
	shared := false
	for g := range results[0].goroutines {
		for _, r := range results[1:] {
			shared = shared || r.goroutines[g]
		}
	}
	if !shared {
		t.Error("no goroutine address repeated across processes: the test no longer exercises the per-process keys")
	}
	if got := c.Lost(); got != 0 {
		t.Errorf("%d events lost", got)
	}

	// The Capture's stats (for /metrics) name each process.
	cs := c.Stats()
	byPID := map[int]ProcessProbeStats{}
	for _, p := range cs.Probes {
		if p.Span == fib.Spec.Span {
			byPID[p.PID] = p
		}
	}
	for i, p := range procs {
		if got := byPID[p.cmd.Process.Pid]; got.Entries != want || got.Returns != want || got.Uprobes == 0 {
			t.Errorf("Capture.Stats of process %d: %+v, want %d entries and returns", i, got, want)
		}
	}
	found := false
	for _, m := range cs.Maps {
		if m.Name == "stacks" {
			found = true
			if m.Entries < n || m.Entries > int(m.MaxEntries) || m.Bytes == 0 {
				t.Errorf("stacks map stats %+v: want at least one goroutine per process", m)
			}
		}
	}
	if !found {
		t.Error("no stacks map in Capture.Stats")
	}
	// A process re-attached before its old Tracer closes (the agent's
	// config change): the new Tracer gets the records, and the old one's
	// Close leaves the process's counters and routing to it.
	re, err := c.Attach(t.Context(), prog, procs[1].cmd.Process.Pid, DefaultOptions())
	if err != nil {
		t.Fatalf("re-attach: %v", err)
	}
	defer re.Close()
	checkFib(t, procs[1], re, fib)
	if err := tracers[1].Close(); err != nil {
		t.Fatal(err)
	}
	checkFib(t, procs[1], re, fib)
	if st := re.Stats().Probes[fib.ID]; st.Returns != want+2*fibCalls(3) {
		t.Errorf("re-attached process counters %+v, want %d returns (the old Tracer's Close kept them)", st, want+2*fibCalls(3))
	}

	// Detaching a process forgets its counters.
	pid := procs[0].cmd.Process.Pid
	if err := tracers[0].Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Stats().Probes {
		if p.PID == pid {
			t.Errorf("counters of detached process %d still listed: %+v", pid, p)
		}
	}
}
