package probes

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/routerscope/routerscope/bpf"
	"github.com/routerscope/routerscope/internal/testenv"
)

// TestCaptureStatsLeaveExitedProcesses: counters a kernel program writes
// for a process after its Tracer closed (a socket's last callbacks run
// after the process is gone) are not reported as that process's, so
// /metrics drops a detached process's series.
func TestCaptureStatsLeaveExitedProcesses(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedFixedHeap(t)
	s := newProbeSet(t, bin)
	s.add("main.fib")
	prog := s.program()
	c := newTestCapture(t, CaptureOptions{})
	p := startTraced(t, bin)
	pid := p.cmd.Process.Pid
	tr, err := c.Attach(t.Context(), prog, pid, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	put := func() {
		t.Helper()
		prop := make([]bpf.CapturePropagationCounters, cpus)
		prop[0].Recorded = 3
		if err := c.maps.PropCounters.Put(uint32(pid), prop); err != nil {
			t.Fatalf("write prop_counters: %v", err)
		}
		lost := make([]uint64, cpus)
		lost[0] = 2
		if err := c.maps.Lost.Put(uint32(pid), lost); err != nil {
			t.Fatalf("write lost: %v", err)
		}
	}
	put()
	st := c.Stats()
	if st.Propagation[pid].Recorded != 3 || st.Lost[pid] != 2 {
		t.Fatalf("attached process: propagation %+v, lost %d; want the kernel's 3 recorded and 2 lost", st.Propagation[pid], st.Lost[pid])
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	put() // counted again after the Tracer's Close deleted them
	st = c.Stats()
	if _, ok := st.Propagation[pid]; ok {
		t.Errorf("closed process still has propagation counters %+v", st.Propagation[pid])
	}
	if _, ok := st.Lost[pid]; ok {
		t.Errorf("closed process still has a lost count %d", st.Lost[pid])
	}
}
