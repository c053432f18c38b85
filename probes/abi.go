package probes

import (
	"debug/dwarf"
	"fmt"
)

// Go's internal register ABI on amd64 (go.dev/src/cmd/compile/abi-internal.md):
// nine integer registers RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11 (the
// order of RegRAX..RegR11) and fifteen float registers X0-X14.
const (
	numIntRegs   = 9
	numFloatRegs = 15
	ptrSize      = 8
)

// abiRegs is how many integer and float registers an architecture's Go
// internal ABI assigns arguments and results to.
type abiRegs struct{ ints, floats int }

// Register counts of the internal ABI per architecture: amd64 above; arm64
// R0-R15 and F0-F15.
var (
	amd64ABI = abiRegs{ints: numIntRegs, floats: numFloatRegs}
	arm64ABI = abiRegs{ints: 16, floats: 16}
)

// abiFor is the register ABI of a GOARCH.
func abiFor(goarch string) abiRegs {
	if goarch == "arm64" {
		return arm64ABI
	}
	return amd64ABI
}

// abiPart is one register-assigned scalar piece of a value: the bytes
// [off, off+size) of the value are in integer register reg (or float
// register reg when float).
type abiPart struct {
	off, size int64
	float     bool
	reg       int
}

// abiSlot is where a parameter or result is: in registers, piece by piece,
// or whole on the stack at stackOff past the return address (SP+8 at entry
// and at a RET, when SP points at the return address).
type abiSlot struct {
	inRegs   bool
	parts    []abiPart
	stackOff int64
}

// abiState is the assignment cursor: next integer and float register and
// the stack offset.
type abiState struct {
	regs         abiRegs
	ints, floats int
	stack        int64
}

// assignABI runs the ABI's assignment algorithm: the receiver and
// arguments in order from the first registers, then the results from the
// first registers again, each value whole in registers or whole on the
// stack; the result stack area starts pointer-aligned after the arguments'.
func assignABI(ins, outs []dwarf.Type) (inSlots, outSlots []abiSlot, err error) {
	return assignABIFor(amd64ABI, ins, outs)
}

// assignABIFor is assignABI with an architecture's register counts.
func assignABIFor(regs abiRegs, ins, outs []dwarf.Type) (inSlots, outSlots []abiSlot, err error) {
	st := abiState{regs: regs}
	for _, t := range ins {
		s, err := st.assign(t)
		if err != nil {
			return nil, nil, err
		}
		inSlots = append(inSlots, s)
	}
	st = abiState{regs: regs, stack: alignUp(st.stack, ptrSize)}
	for _, t := range outs {
		s, err := st.assign(t)
		if err != nil {
			return nil, nil, err
		}
		outSlots = append(outSlots, s)
	}
	return inSlots, outSlots, nil
}

// assign places one value: registers if all its pieces fit in the
// remaining ones, else the stack, with the register cursor restored.
func (st *abiState) assign(t dwarf.Type) (abiSlot, error) {
	ints, floats := st.ints, st.floats
	var parts []abiPart
	ok, err := st.regAssign(t, 0, &parts)
	if err != nil {
		return abiSlot{}, err
	}
	if ok && st.ints <= st.regs.ints && st.floats <= st.regs.floats {
		return abiSlot{inRegs: true, parts: parts}, nil
	}
	st.ints, st.floats = ints, floats
	align, err := alignOf(t)
	if err != nil {
		return abiSlot{}, err
	}
	st.stack = alignUp(st.stack, align)
	s := abiSlot{stackOff: st.stack}
	st.stack += t.Size()
	return s, nil
}

// regAssign is the ABI's recursive register assignment of a value of
// type t at byte offset off within the parameter. It reports false when
// the value cannot go in registers (an array longer than one, or the
// registers ran out); error only for types it cannot lay out at all.
func (st *abiState) regAssign(t dwarf.Type, off int64, parts *[]abiPart) (bool, error) {
	t = unwrapTypedef(t)
	switch t := t.(type) {
	case *dwarf.BoolType, *dwarf.IntType, *dwarf.UintType, *dwarf.CharType, *dwarf.UcharType,
		*dwarf.PtrType, *dwarf.FuncType:
		if t.Size() > ptrSize {
			return false, nil
		}
		*parts = append(*parts, abiPart{off: off, size: t.Size(), reg: st.ints})
		st.ints++
	case *dwarf.FloatType:
		*parts = append(*parts, abiPart{off: off, size: t.Size(), float: true, reg: st.floats})
		st.floats++
	case *dwarf.ComplexType:
		half := t.Size() / 2
		*parts = append(*parts,
			abiPart{off: off, size: half, float: true, reg: st.floats},
			abiPart{off: off + half, size: half, float: true, reg: st.floats + 1})
		st.floats += 2
	case *dwarf.StructType:
		// Strings, slices and interfaces are structs of their words in
		// Go's DWARF (str/len, array/len/cap, tab/data), so the generic
		// field walk assigns them 2, 3 and 2 registers as the ABI says.
		for _, f := range t.Field {
			ok, err := st.regAssign(f.Type, off+f.ByteOffset, parts)
			if !ok || err != nil {
				return false, err
			}
		}
	case *dwarf.ArrayType:
		switch t.Count {
		case 0:
		case 1:
			return st.regAssign(t.Type, off, parts)
		default:
			return false, nil
		}
	default:
		return false, fmt.Errorf("type %s (%T): %w", t, t, ErrNotSupported)
	}
	return st.ints <= st.regs.ints && st.floats <= st.regs.floats, nil
}

// alignOf is the Go alignment of a type on amd64.
func alignOf(t dwarf.Type) (int64, error) {
	t = unwrapTypedef(t)
	switch t := t.(type) {
	case *dwarf.BoolType, *dwarf.IntType, *dwarf.UintType, *dwarf.CharType, *dwarf.UcharType,
		*dwarf.PtrType, *dwarf.FuncType, *dwarf.FloatType:
		return max(1, min(t.Size(), ptrSize)), nil
	case *dwarf.ComplexType:
		return max(1, t.Size()/2), nil
	case *dwarf.StructType:
		a := int64(1)
		for _, f := range t.Field {
			fa, err := alignOf(f.Type)
			if err != nil {
				return 0, err
			}
			a = max(a, fa)
		}
		return a, nil
	case *dwarf.ArrayType:
		return alignOf(t.Type)
	}
	return 0, fmt.Errorf("alignment of %s (%T): %w", t, t, ErrNotSupported)
}

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }

// unwrapTypedef follows typedefs (Go's DWARF uses them for named types
// and interfaces) to the underlying type.
func unwrapTypedef(t dwarf.Type) dwarf.Type {
	for i := 0; i < 100; i++ {
		td, ok := t.(*dwarf.TypedefType)
		if !ok {
			return t
		}
		t = td.Type
	}
	return t
}
