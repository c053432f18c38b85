package probes

import (
	"debug/elf"
	"fmt"
)

// Arch decodes the machine code of one architecture: where a Go function's
// stack-growth check ends and where it returns, for reports how an
// instruction reads and what its registers are called.
type Arch interface {
	// Name is the GOARCH name, e.g. "amd64".
	Name() string
	// DecodePrologue returns the byte offset, within code (a function body
	// starting at its first instruction), of the first instruction after
	// the stack-growth check, 0 when the function has none, and whether the
	// kernel emulates that instruction instead of single-stepping it.
	DecodePrologue(code []byte) (skip int, emulated bool, err error)
	// FindReturns returns the byte offsets within code of every return
	// instruction.
	FindReturns(code []byte) ([]int, error)
	// FindCalls returns the byte offsets within code (a function body
	// whose first instruction is at virtual address addr) of every direct
	// call to the function at virtual address target. The kernel emulates
	// such a call instead of single-stepping it.
	FindCalls(code []byte, addr, target uint64) ([]int, error)
	// Instruction disassembles the instruction at the start of code, in
	// Go assembler syntax, for reports.
	Instruction(code []byte) string
	// RegName names a Reg as this architecture's assembler does.
	RegName(r Reg) string
}

// archFor picks the decoder for an ELF machine.
func archFor(m elf.Machine) (Arch, error) {
	switch m {
	case elf.EM_X86_64:
		return amd64{}, nil
	case elf.EM_AARCH64:
		return arm64{}, nil
	default:
		return nil, fmt.Errorf("machine %v: %w (amd64 and arm64 are implemented)", m, ErrNotSupported)
	}
}
