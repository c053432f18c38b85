package probes

import (
	"fmt"

	"golang.org/x/arch/arm64/arm64asm"
)

// arm64 decodes AArch64 code as the Go compiler emits it. Instructions are
// four bytes, aligned.
type arm64 struct{}

// Name implements Arch.
func (arm64) Name() string { return "arm64" }

// arm64StackCheckMax bounds the stack check's length: the load of
// g.stackguard0, up to five instructions computing SP minus the frame
// (MOVZ/MOVK of a large constant, SUBS, B.LO), the CMP and the B.LS.
const arm64StackCheckMax = 8

// condLS is the AArch64 condition code LS (unsigned lower or same).
const condLS = 9

// DecodePrologue recognises the stack check the Go compiler emits on
// arm64 (cmd/internal/obj/arm64 stacksplit): it starts by loading
// g.stackguard0 (MOVD 16(g), R16, where g is R28) and ends with a B.LS to
// the morestack call; frame sizes change only what is between (CMP of SP,
// or SUB/SUBS of the frame size first). morestack grows the stack and
// jumps back to the first instruction, so the probe goes after the B.LS,
// where it fires once per call. The kernel (arch/arm64/kernel/probes/
// simulate-insn.c) simulates only branches, ADR/ADRP and literal loads;
// the frame setup found there (a store) is single-stepped.
func (arm64) DecodePrologue(code []byte) (int, bool, error) {
	skip := 0
	first, err := arm64asm.Decode(code)
	if err == nil && isGuardLoad(first) {
		for pc := 4; pc+4 <= len(code) && pc < 4*arm64StackCheckMax; pc += 4 {
			in, err := arm64asm.Decode(code[pc:])
			if err != nil {
				return 0, false, fmt.Errorf("decode prologue at +%#x: %w", pc, err)
			}
			if c, ok := in.Args[0].(arm64asm.Cond); in.Op == arm64asm.B && ok && c.Value == condLS {
				skip = pc + 4
				break
			}
		}
	}
	if skip+4 > len(code) {
		return 0, false, nil
	}
	in, err := arm64asm.Decode(code[skip:])
	if err != nil {
		return 0, false, fmt.Errorf("decode instruction at +%#x: %w", skip, err)
	}
	return skip, simulatedByUprobes(in), nil
}

// isGuardLoad matches MOVD 16(R28), R16: LDR X16, [X28,#16].
func isGuardLoad(in arm64asm.Inst) bool {
	if in.Op != arm64asm.LDR || in.Args[0] != arm64asm.X16 {
		return false
	}
	m, ok := in.Args[1].(arm64asm.MemImmediate)
	return ok && m.Base == arm64asm.RegSP(arm64asm.X28) && in.String() == "LDR X16, [X28,#16]"
}

// FindReturns sweeps the body four bytes at a time. A word that does not
// decode (Go emits none in compiled code, but assembly may carry data) is
// skipped: with fixed-width instructions a sweep cannot lose alignment.
func (arm64) FindReturns(code []byte) ([]int, error) {
	var rets []int
	for pc := 0; pc+4 <= len(code); pc += 4 {
		in, err := arm64asm.Decode(code[pc:])
		if err == nil && in.Op == arm64asm.RET {
			rets = append(rets, pc)
		}
	}
	return rets, nil
}

// FindCalls sweeps the body as FindReturns does for BL, whose target is
// its own address plus the PC-relative offset.
func (arm64) FindCalls(code []byte, addr, target uint64) ([]int, error) {
	var calls []int
	for pc := 0; pc+4 <= len(code); pc += 4 {
		in, err := arm64asm.Decode(code[pc:])
		if err != nil || in.Op != arm64asm.BL {
			continue
		}
		if rel, ok := in.Args[0].(arm64asm.PCRel); ok && addr+uint64(pc)+uint64(int64(rel)) == target {
			calls = append(calls, pc)
		}
	}
	return calls, nil
}

// simulatedByUprobes reports whether the arm64 kernel simulates the
// instruction instead of single-stepping it out of line
// (arch/arm64/kernel/probes/decode-insn.c: branches, ADR/ADRP and
// PC-relative literal loads).
func simulatedByUprobes(in arm64asm.Inst) bool {
	switch in.Op {
	case arm64asm.B, arm64asm.BL, arm64asm.BR, arm64asm.BLR, arm64asm.RET, arm64asm.CBZ, arm64asm.CBNZ,
		arm64asm.TBZ, arm64asm.TBNZ, arm64asm.ADR, arm64asm.ADRP:
		return true
	case arm64asm.LDR, arm64asm.LDRSW:
		_, lit := in.Args[1].(arm64asm.PCRel)
		return lit
	}
	return false
}

// Instruction implements Arch.
func (arm64) Instruction(code []byte) string {
	in, err := arm64asm.Decode(code)
	if err != nil {
		return fmt.Sprintf("(undecodable: %v)", err)
	}
	return arm64asm.GoSyntax(in, 0, nil, nil)
}

// RegName implements Arch. On arm64 the Reg values name R0-R8 (the first
// nine of Go's sixteen integer argument registers), RSP, and g (R28) for
// RegR14.
func (arm64) RegName(r Reg) string {
	switch {
	case r <= RegR11:
		return fmt.Sprintf("R%d", r)
	case r == RegSP:
		return "RSP"
	case r == RegR14:
		return "g"
	}
	return fmt.Sprintf("reg%d", r)
}
