package probes

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/routerscope/routerscope/internal/testenv"
)

// countdownCtx is a context that is done from its n+1-th Err call on: it
// cancels an Attach at each of its checks in turn, before it starts or
// after some of its uprobes are attached.
type countdownCtx struct {
	context.Context
	left atomic.Int64
}

func newCountdownCtx(n int64) *countdownCtx {
	c := &countdownCtx{Context: context.Background()}
	c.left.Store(n)
	return c
}

func (c *countdownCtx) Err() error {
	if c.left.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// TestAttachStopsWhenContextIsDone cancels a Capture's Attach at every
// point it checks its context, in both link modes: each time the error
// wraps context.Canceled, no Tracer stays registered, no descriptor id
// stays taken, and no link of the Capture's programs is left in the
// kernel. Past the last check the same attach succeeds and traces.
func TestAttachStopsWhenContextIsDone(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	proc := startTraced(t, bin)
	for _, perf := range []bool{false, true} {
		c := newTestCapture(t, CaptureOptions{PerfEventLinks: perf})
		t.Run(c.mode.String(), func(t *testing.T) {
			s := newProbeSet(t, bin)
			s.add("main.work")
			s.add("main.fib")
			s.add("main.mark")
			prog := s.program()
			opts := DefaultOptions()
			canceled := 0
			for n := int64(0); ; n++ {
				if n > 1000 {
					t.Fatal("Attach still canceled after 1000 context checks")
				}
				tr, err := c.Attach(newCountdownCtx(n), prog, proc.cmd.Process.Pid, opts)
				if err == nil {
					if links := captureLinks(t, c); links == 0 {
						t.Error("attached, but no link of the capture's programs in the kernel")
					}
					proc.do(t, "work 1")
					if err := tr.Close(); err != nil {
						t.Fatal(err)
					}
					break
				}
				canceled++
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("check %d: Attach error %v, want one wrapping context.Canceled", n, err)
				}
				c.mu.Lock()
				tracers, held := len(c.tracers), len(c.programs)
				c.mu.Unlock()
				if tracers != 0 || held != 0 {
					t.Fatalf("check %d: canceled Attach left %d tracers and %d programs' ids", n, tracers, held)
				}
				if links := captureLinks(t, c); links != 0 {
					t.Fatalf("check %d: canceled Attach left %d links in the kernel", n, links)
				}
			}
			// Before setup, before the earlier Tracer's links, and one
			// per program (multi) or per uprobe (perf_event) at least.
			if canceled < 4 {
				t.Errorf("Attach checked its context %d times before succeeding, want one per step and per link", canceled)
			}
			t.Logf("%s: canceled at each of %d checks", c.mode, canceled)
		})
	}
}

// TestAttachCanceledBeforeLoading: the one-process Attach does not even
// load the kernel programs for a done context.
func TestAttachCanceledBeforeLoading(t *testing.T) {
	s := newProbeSet(t, tracedBinary(t))
	s.add("main.work")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if tr, err := Attach(ctx, s.program(), 1, DefaultOptions()); !errors.Is(err, context.Canceled) {
		if tr != nil {
			tr.Close()
		}
		t.Fatalf("Attach with a canceled context: %v, want context.Canceled", err)
	}
}

// captureLinks counts the kernel's links of c's programs.
func captureLinks(t *testing.T, c *Capture) int {
	t.Helper()
	ids := map[ebpf.ProgramID]bool{}
	for _, p := range []*ebpf.Program{c.progs.entry, c.progs.ret, c.progs.newproc1, c.progs.newproc1Ret,
		c.propProgs.headerLine, c.propProgs.headerBlock, c.propProgs.roundTrip, c.propProgs.connWrite} {
		if p == nil {
			continue
		}
		info, err := p.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		ids[id] = true
	}
	n := 0
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil {
			continue // gone meanwhile, or a kind this kernel cannot describe
		}
		if ids[info.Program] {
			n++
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}
