package probes

import (
	"fmt"
)

// CallSites returns the file offsets of every direct call from the
// function caller to the function callee, for uprobes that should fire
// only when callee is called from caller: the kernel emulates a direct
// call (amd64 CALL rel32, arm64 BL), so a probe there costs what an entry
// probe costs, and at the call the arguments are already in callee's
// argument registers (Go's register ABI), where callee's entry would see
// them. An empty result means caller calls callee only indirectly, or has
// it inlined.
func (b *Binary) CallSites(caller, callee string) ([]uint64, error) {
	from, err := b.Function(caller)
	if err != nil {
		return nil, err
	}
	to, err := b.Function(callee)
	if err != nil {
		return nil, err
	}
	code := make([]byte, from.Size)
	if _, err := b.file.ReadAt(code, int64(from.SymbolOffset)); err != nil {
		return nil, fmt.Errorf("function %s: read %d bytes at file offset %#x: %w", from.Name, from.Size, from.SymbolOffset, err)
	}
	calls, err := b.arch.FindCalls(code, from.Address, to.Address)
	if err != nil {
		return nil, fmt.Errorf("function %s: find calls to %s: %w", from.Name, to.Name, err)
	}
	offs := make([]uint64, len(calls))
	for i, c := range calls {
		offs[i] = from.SymbolOffset + uint64(c)
	}
	return offs, nil
}
