package probes

import (
	"fmt"
)

// newproc1 is the runtime function every go statement goes through. Go 1.26
// (runtime/proc.go):
//
//	func newproc1(fn *funcval, callergp *g, callerpc uintptr, parked bool, waitreason waitReason) *g
//
// newproc calls it on the system stack, so R14 holds g0 there; the creating
// goroutine is callergp, the second integer argument (RBX), and the new
// goroutine is the result (RAX at each RET). The signature has been the same
// since Go 1.18 except for the trailing parameters, which are not read; the
// probe is verified on the releases of PartHandOff and attached only to a
// binary Part.Check accepts (gocontract.go).
const newproc1 = "runtime.newproc1"

// attachHandOff probes runtime.newproc1 so goroutines started inside a span
// nest under it while it is open (uprobe_newproc1 in bpf/capture.c).
func (t *Tracer) attachHandOff() error {
	fn, err := t.bin.Function(newproc1)
	if err != nil {
		return fmt.Errorf("attach goroutine hand-off: %w (set Options.HandOff to false to trace without it)", err)
	}
	if len(fn.ReturnOffsets) == 0 {
		return fmt.Errorf("attach goroutine hand-off: %s in %s has no RET instruction: %w", newproc1, t.bin.Path, ErrNotSupported)
	}
	// The first instruction, not EntryOffset: the arguments are in their
	// registers there by definition, and newproc1 runs on the system stack,
	// where morestack never restarts it.
	t.linker.add(t.c.progs.newproc1, newproc1, fn.SymbolOffset, 0)
	t.handOff++
	for _, off := range fn.ReturnOffsets {
		t.linker.add(t.c.progs.newproc1Ret, newproc1, off, 0)
		t.handOff++
	}
	return nil
}
