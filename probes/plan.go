package probes

// This file is the contract between spec resolution (user space, from the
// target binary) and the kernel programs: a Resolved probe says where to put
// the uprobes and, for each attribute, which registers and memory to read.

// Reg is a register index in Go's amd64 internal ABI integer order. The
// kernel program maps the index to the pt_regs field.
type Reg uint8

// Integer argument and result registers of Go's internal ABI on amd64, in
// assignment order, plus the stack pointer and the goroutine register.
const (
	RegRAX Reg = iota
	RegRBX
	RegRCX
	RegRDI
	RegRSI
	RegR8
	RegR9
	RegR10
	RegR11
	RegSP  // stack pointer: base for stack-passed arguments
	RegR14 // current goroutine (g) on amd64
	NumRegs
)

// ValueKind says how the kernel reads a value and how user space decodes it.
type ValueKind uint8

// Value kinds.
const (
	KindInt         ValueKind = iota + 1 // signed integer of Size bytes
	KindUint                             // unsigned integer of Size bytes (also pointers)
	KindBool                             // one byte, non-zero is true
	KindFloat                            // IEEE float of Size (4 or 8) bytes; memory only
	KindString                           // Go string: data pointer and length
	KindStringSlice                      // []string: data pointer, length, capacity
	KindError                            // interface (itab, data): nil or not, plus the message when readable
)

// Location says where a value is when the probe fires.
//
// In registers (InRegs): Regs[:NRegs] hold the value's words in order
// (a string is data pointer then length; a slice adds capacity; an
// interface is type word then data word; a scalar is one word).
//
// In memory: addr := value of register Base; for every offset but the last,
// addr = *(uint64)(addr + offset); finally addr += last offset. The value's
// words are then read from addr. Stack-passed arguments use Base = RegSP.
type Location struct {
	InRegs  bool
	Regs    [3]Reg
	NRegs   uint8
	Base    Reg
	Offsets []int64
}

// Fetch reads one value for one attribute.
type Fetch struct {
	// Attr is the index of the attribute in Probe.Attributes this value is
	// for, AttrErrorRule (-1) for the error rule's value, or
	// AttrErrorMessage for the error rule's message.
	Attr int
	Kind ValueKind
	// Size is the width in bytes of integer, bool and float values.
	Size uint8
	Loc  Location
}

// Resolved is a probe resolved against one binary: where its uprobes go and
// what each reads.
type Resolved struct {
	// ID is the probe's index within its Program; the kernel keys its
	// descriptor by it.
	ID   int
	Spec Probe
	// Address is the function's virtual address in the binary.
	Address uint64
	// SymbolOffset is the file offset of the function's first instruction
	// (the "naive" placement).
	SymbolOffset uint64
	// EntryOffset is the file offset where the entry uprobe goes: after the
	// stack-growth check, on an instruction the kernel emulates, so the probe
	// is cheap and fires once even when the stack grows. Equals SymbolOffset
	// for functions without a stack check.
	EntryOffset uint64
	// ReturnOffsets are the file offsets of every RET instruction.
	ReturnOffsets []uint64
	// Entry values are read when the function is entered.
	Entry []Fetch
	// Return values are read at each RET.
	Return []Fetch
	// Error, when non-nil, is read at return and decides failure with
	// ErrorRule.
	Error *Fetch
	// ParentID is the ID of the probe named by Spec.Parent, or -1.
	ParentID int
	// EndNext is Spec.End == "next" or Spec.EndAt set: no RET uprobes, the span ends where
	// the next span opens at its depth or above, or an enclosing one ends.
	EndNext bool
	// EndAt is Spec.EndAt's function, whose entry ends the span too (its
	// EntryOffset takes the uprobe); nil without end_at.
	EndAt *Function
	// EndFromEntry is set when the end values (Return, Error) are end:
	// sources, read through the registers saved at entry.
	EndFromEntry bool
}

// Program is a probe file resolved against one binary.
type Program struct {
	// Binary is the path the binary was read from.
	Binary string
	// BuildID identifies the binary (Go build id, else ELF build id, else
	// a hash of the file), for caching resolutions.
	BuildID string
	Probes  []*Resolved
}
