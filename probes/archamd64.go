package probes

import (
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// amd64 decodes x86-64 code as the Go compiler emits it.
type amd64 struct{}

// Name implements Arch.
func (amd64) Name() string { return "amd64" }

// stackGuardOffset is the offset of g.stackguard0 in the runtime's g
// struct (after stack.lo and stack.hi); every ABIInternal stack check
// compares against 16(R14).
const stackGuardOffset = 16

// DecodePrologue recognises the three stack checks the Go compiler emits
// on amd64 (cmd/internal/obj/x86 stacksplit), by frame size:
//
//	small:  CMPQ SP, 16(R14); JBE morestack
//	large:  LEAQ -N(SP), R12; CMPQ R12, 16(R14); JBE morestack
//	huge:   MOVQ SP, R12; SUBQ $N, R12; JB morestack; CMPQ R12, 16(R14); JBE morestack
//
// morestack grows the stack and jumps back to the function's first
// instruction, so a probe placed after the check fires once per call even
// when the stack grows.
func (amd64) DecodePrologue(code []byte) (int, bool, error) {
	var insts []x86asm.Inst
	pc := 0
	for len(insts) < 5 && pc < len(code) {
		in, err := x86asm.Decode(code[pc:], 64)
		if err != nil {
			return 0, false, fmt.Errorf("decode prologue at +%#x: %w", pc, err)
		}
		insts = append(insts, in)
		pc += in.Len
	}
	skip := 0
	switch {
	case matchCmpGuard(insts, 0, x86asm.RSP) && matchOp(insts, 1, x86asm.JBE):
		skip = sumLen(insts[:2])
	case matchLeaR12(insts, 0) && matchCmpGuard(insts, 1, x86asm.R12) && matchOp(insts, 2, x86asm.JBE):
		skip = sumLen(insts[:3])
	case matchMovR12SP(insts, 0) && matchOp(insts, 1, x86asm.SUB) && matchOp(insts, 2, x86asm.JB) &&
		matchCmpGuard(insts, 3, x86asm.R12) && matchOp(insts, 4, x86asm.JBE):
		skip = sumLen(insts[:5])
	}
	if skip >= len(code) {
		return 0, false, nil
	}
	in, err := x86asm.Decode(code[skip:], 64)
	if err != nil {
		return 0, false, fmt.Errorf("decode instruction at +%#x: %w", skip, err)
	}
	return skip, emulatedByUprobes(in), nil
}

// FindReturns sweeps the body linearly. Go emits no data inside function
// bodies on amd64 (jump tables live in rodata), so a linear sweep over the
// symbol's size sees every instruction; a byte that does not decode means
// the range is wrong, and guessing would put a breakpoint mid-instruction.
func (amd64) FindReturns(code []byte) ([]int, error) {
	var rets []int
	for pc := 0; pc < len(code); {
		in, err := x86asm.Decode(code[pc:], 64)
		if err != nil {
			// x86asm lacks some extensions (AVX-512) that hand-written
			// assembly uses; compiled Go code decodes.
			return nil, fmt.Errorf("decode instruction at +%#x (% x): %v: %w", pc, code[pc:min(pc+8, len(code))], err, ErrNotSupported)
		}
		if in.Op == x86asm.RET {
			rets = append(rets, pc)
		}
		pc += in.Len
	}
	return rets, nil
}

// FindCalls sweeps the body as FindReturns does for CALL rel32, whose
// target is the address after the instruction plus the displacement.
func (amd64) FindCalls(code []byte, addr, target uint64) ([]int, error) {
	var calls []int
	for pc := 0; pc < len(code); {
		in, err := x86asm.Decode(code[pc:], 64)
		if err != nil {
			return nil, fmt.Errorf("decode instruction at +%#x (% x): %v: %w", pc, code[pc:min(pc+8, len(code))], err, ErrNotSupported)
		}
		if rel, ok := in.Args[0].(x86asm.Rel); ok && in.Op == x86asm.CALL &&
			addr+uint64(pc+in.Len)+uint64(int64(rel)) == target {
			calls = append(calls, pc)
		}
		pc += in.Len
	}
	return calls, nil
}

// emulatedByUprobes reports whether the kernel emulates the instruction
// (arch/x86/kernel/uprobes.c: branch_setup_xol_ops for relative CALL, JMP
// and Jcc, push_setup_xol_ops for PUSH of a register) instead of copying
// it to the out-of-line slot and single-stepping it, which costs a second
// trap.
func emulatedByUprobes(in x86asm.Inst) bool {
	switch in.Op {
	case x86asm.PUSH:
		_, isReg := in.Args[0].(x86asm.Reg)
		return isReg
	case x86asm.CALL, x86asm.JMP, x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE,
		x86asm.JG, x86asm.JGE, x86asm.JL, x86asm.JLE, x86asm.JNE, x86asm.JNO, x86asm.JNP,
		x86asm.JNS, x86asm.JO, x86asm.JP, x86asm.JS:
		_, isRel := in.Args[0].(x86asm.Rel)
		return isRel
	}
	return false
}

// Instruction implements Arch.
func (amd64) Instruction(code []byte) string {
	in, err := x86asm.Decode(code, 64)
	if err != nil {
		return fmt.Sprintf("(undecodable: %v)", err)
	}
	return x86asm.GoSyntax(in, 0, nil)
}

// amd64RegNames are the Reg values' names in Go assembler syntax.
var amd64RegNames = [NumRegs]string{"AX", "BX", "CX", "DI", "SI", "R8", "R9", "R10", "R11", "SP", "R14"}

// RegName implements Arch.
func (amd64) RegName(r Reg) string {
	if r < NumRegs {
		return amd64RegNames[r]
	}
	return fmt.Sprintf("reg%d", r)
}

func sumLen(insts []x86asm.Inst) int {
	n := 0
	for _, in := range insts {
		n += in.Len
	}
	return n
}

func matchOp(insts []x86asm.Inst, i int, op x86asm.Op) bool {
	return i < len(insts) && insts[i].Op == op
}

// matchCmpGuard matches CMPQ reg, 16(R14).
func matchCmpGuard(insts []x86asm.Inst, i int, reg x86asm.Reg) bool {
	if !matchOp(insts, i, x86asm.CMP) {
		return false
	}
	r, ok := insts[i].Args[0].(x86asm.Reg)
	m, okm := insts[i].Args[1].(x86asm.Mem)
	return ok && okm && r == reg && m.Base == x86asm.R14 && m.Index == 0 && m.Disp == stackGuardOffset
}

// matchLeaR12 matches LEAQ disp(SP), R12.
func matchLeaR12(insts []x86asm.Inst, i int) bool {
	if !matchOp(insts, i, x86asm.LEA) {
		return false
	}
	r, ok := insts[i].Args[0].(x86asm.Reg)
	m, okm := insts[i].Args[1].(x86asm.Mem)
	return ok && okm && r == x86asm.R12 && m.Base == x86asm.RSP
}

// matchMovR12SP matches MOVQ SP, R12.
func matchMovR12SP(insts []x86asm.Inst, i int) bool {
	if !matchOp(insts, i, x86asm.MOV) {
		return false
	}
	dst, ok := insts[i].Args[0].(x86asm.Reg)
	src, oks := insts[i].Args[1].(x86asm.Reg)
	return ok && oks && dst == x86asm.R12 && src == x86asm.RSP
}
