package probes

import (
	"debug/buildinfo"
	"debug/dwarf"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The built-in probes read another program's runtime and net/http
// internals at fixed registers and layouts, which is a contract with the Go
// releases that compiled it. Each part below declares the releases it was
// verified on (the router's e2e trees, hand-off and propagation tests pass
// for a router built with each, see e2e/goversions_test.go) and, where the
// binary has DWARF, checks the registers and layout it relies on against
// the binary's own description. A part outside its range, or whose layout
// DWARF contradicts, is turned off with the reason, never read as garbage.

// GoRelease is a Go release line: go1.27.3 is {1, 27}.
type GoRelease struct{ Major, Minor int }

func (r GoRelease) String() string { return fmt.Sprintf("go%d.%d", r.Major, r.Minor) }

// less orders releases.
func (r GoRelease) less(o GoRelease) bool {
	return r.Major < o.Major || r.Major == o.Major && r.Minor < o.Minor
}

// ParseGoVersion reads the release line of a Go version string as
// runtime.Version and debug/buildinfo spell it: "go1.27.3", "go1.27rc1",
// "go1.26.0 X:nodwarf5". Development builds ("devel ...") name no release.
func ParseGoVersion(v string) (GoRelease, bool) {
	v, _, _ = strings.Cut(v, " ")
	rest, ok := strings.CutPrefix(v, "go")
	if !ok {
		return GoRelease{}, false
	}
	major, rest, ok := strings.Cut(rest, ".")
	if !ok {
		return GoRelease{}, false
	}
	// The minor number ends at a patch dot or a pre-release suffix.
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	ma, err1 := strconv.Atoi(major)
	mi, err2 := strconv.Atoi(rest[:end])
	if err1 != nil || err2 != nil || end == 0 {
		return GoRelease{}, false
	}
	return GoRelease{ma, mi}, true
}

// GoVersion is the Go version the binary was built with, from its build
// information (debug/buildinfo), e.g. "go1.27.3".
func (b *Binary) GoVersion() (string, error) {
	info, err := buildinfo.Read(b.file)
	if err != nil {
		return "", fmt.Errorf("read the Go build information of %s: %w", b.Path, err)
	}
	return info.GoVersion, nil
}

// Part is one built-in probe or fixed layout and the Go releases it is
// verified on.
type Part struct {
	// Name says what turns off when the part is not trusted.
	Name string
	// Reads says which internals the part reads, for the reason a part is
	// off.
	Reads string
	// Min and Max are the first and last verified release lines.
	Min, Max GoRelease
	// check compares what the part reads with the binary's DWARF, when it
	// has it; nil means no layout to check.
	check func(b *Binary) error
}

// The verified releases: this machine's Go 1.26 and Go 1.27
// (GOTOOLCHAIN=go1.27.3). A new release joins a range once the e2e suite
// passes for a router built with it.
var (
	goVerifiedMin = GoRelease{1, 26}
	goVerifiedMax = GoRelease{1, 27}
)

// The built-in parts.
var (
	// PartCapture is the capture engine itself: every span's goroutine is
	// R14 (the register ABI) and its stack depth comes from
	// runtime.g.stack.hi at offset 8 (bpf/capture.c, frame_depth).
	PartCapture = Part{Name: "span capture", Reads: "R14 as the current g and runtime.g.stack.hi at offset 8",
		Min: goVerifiedMin, Max: goVerifiedMax, check: checkGStack}
	// PartHandOff is goroutine hand-off: runtime.newproc1's callergp in
	// RBX at entry and the new g in RAX at its RETs (probes/handoff.go).
	PartHandOff = Part{Name: "goroutine hand-off", Reads: "runtime.newproc1: callergp in RBX, the new g in RAX",
		Min: goVerifiedMin, Max: goVerifiedMax, check: checkNewproc1}
	// PartExtract is traceparent extraction: the header name of
	// net/textproto.canonicalMIMEHeaderKey in RAX, RBX with its line
	// behind it, where readMIMEHeader calls it, and readMIMEHeader's entry.
	PartExtract = Part{Name: "traceparent extraction", Reads: "net/textproto.canonicalMIMEHeaderKey: a []byte in RAX, RBX; readMIMEHeader",
		Min: goVerifiedMin, Max: goVerifiedMax, check: checkExtract}
	// PartInject is traceparent injection's capture side: roundTrip's
	// *persistConn receiver in RAX, and persistConnWriter.Write's receiver,
	// a struct of that one pointer, in RAX.
	PartInject = Part{Name: "traceparent injection", Reads: "net/http.(*persistConn).roundTrip: receiver in RAX; persistConnWriter.Write: receiver {pc *persistConn} in RAX",
		Min: goVerifiedMin, Max: goVerifiedMax, check: checkInject}
)

// ErrUnverifiedGo is returned, or given as the reason a part is off, when
// the target's Go release is outside the range a built-in part was
// verified on, or its DWARF contradicts the layout the part reads.
var ErrUnverifiedGo = errors.New("Go internals not verified for this binary")

// Check says whether the part may read b: nil, or an error wrapping
// ErrUnverifiedGo that names the part, the binary's Go version and why.
func (p Part) Check(b *Binary) error {
	v, err := b.GoVersion()
	if err != nil {
		return fmt.Errorf("%s off: %w: %v", p.Name, ErrUnverifiedGo, err)
	}
	r, ok := ParseGoVersion(v)
	if !ok {
		return fmt.Errorf("%s off: %s was built with %q, not a Go release: %w", p.Name, b.Path, v, ErrUnverifiedGo)
	}
	if r.less(p.Min) || p.Max.less(r) {
		return fmt.Errorf("%s off: %s was built with %s; %s is verified on %s to %s only: %w",
			p.Name, b.Path, v, p.Reads, p.Min, p.Max, ErrUnverifiedGo)
	}
	if p.check == nil {
		return nil
	}
	if err := p.check(b); err != nil {
		if errors.Is(err, ErrNoDWARF) || errors.Is(err, errNoLayout) {
			return nil // nothing to compare with: the release check stands
		}
		return fmt.Errorf("%s off: %s (%s): %v: %w", p.Name, b.Path, v, err, ErrUnverifiedGo)
	}
	return nil
}

// errNoLayout: the binary does not describe what a check would compare
// (the function has no DWARF entry of its own, e.g. it was inlined).
var errNoLayout = errors.New("no DWARF layout to check")

// Go's integer argument registers in ABI order (abi.go numbers them so).
const (
	abiRAX = 0
	abiRBX = 1
)

// argIn checks that the named argument (or the receiver, name "") of fn
// starts in integer register reg at entry, and returns its DWARF type.
func argIn(b *Binary, fn, name string, reg int) (dwarf.Type, error) {
	sig, err := b.signature(fn)
	if err != nil {
		if errors.Is(err, ErrNoDWARF) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", errNoLayout, err)
	}
	var slot abiSlot
	var typ dwarf.Type
	switch {
	case name == "" && sig.receiver != nil:
		slot, typ = sig.recvSlot, sig.receiver.typ
	default:
		found := false
		for i, a := range sig.args {
			if a.name == name {
				slot, typ, found = sig.argSlots[i], a.typ, true
			}
		}
		if !found {
			return nil, fmt.Errorf("%s has no parameter %q", fn, name)
		}
	}
	if !slot.inRegs || len(slot.parts) == 0 || slot.parts[0].float || slot.parts[0].reg != reg {
		return nil, fmt.Errorf("%s: %s is not in integer register %d at entry", fn, orReceiver(name), reg)
	}
	return typ, nil
}

func orReceiver(name string) string {
	if name == "" {
		return "the receiver"
	}
	return name
}

// pointee is the struct a pointer type points to.
func pointee(t dwarf.Type) (*dwarf.StructType, bool) {
	p, ok := unwrapTypedef(t).(*dwarf.PtrType)
	if !ok {
		return nil, false
	}
	st, ok := unwrapTypedef(p.Type).(*dwarf.StructType)
	return st, ok
}

func fieldAt(st *dwarf.StructType, name string) (*dwarf.StructField, bool) {
	for _, f := range st.Field {
		if f.Name == name {
			return f, true
		}
	}
	return nil, false
}

// checkGStack checks runtime.g.stack.hi at offset 8, reached through
// runtime.newproc1's callergp *g.
func checkGStack(b *Binary) error {
	typ, err := argIn(b, newproc1, "callergp", abiRBX)
	if err != nil {
		return err
	}
	g, ok := pointee(typ)
	if !ok {
		return fmt.Errorf("%s: callergp is not a pointer to a struct", newproc1)
	}
	stack, ok := fieldAt(g, "stack")
	if !ok {
		return fmt.Errorf("runtime.g has no field stack")
	}
	st, ok := unwrapTypedef(stack.Type).(*dwarf.StructType)
	if !ok {
		return fmt.Errorf("runtime.g.stack is not a struct")
	}
	hi, ok := fieldAt(st, "hi")
	if !ok || stack.ByteOffset+hi.ByteOffset != 8 {
		return fmt.Errorf("runtime.g.stack.hi is not at offset 8")
	}
	return nil
}

// checkNewproc1 checks callergp in RBX at entry and the *g result in RAX.
func checkNewproc1(b *Binary) error {
	if _, err := argIn(b, newproc1, "callergp", abiRBX); err != nil {
		return err
	}
	sig, err := b.signature(newproc1)
	if err != nil {
		return err
	}
	if len(sig.resultSlots) != 1 || !sig.resultSlots[0].inRegs || sig.resultSlots[0].parts[0].reg != abiRAX {
		return fmt.Errorf("%s does not return one value in RAX", newproc1)
	}
	return nil
}

// checkExtract checks canonicalMIMEHeaderKey's a []byte in RAX, RBX.
func checkExtract(b *Binary) error {
	sig, err := b.signature(symHeaderLine)
	if err != nil {
		if errors.Is(err, ErrNoDWARF) {
			return err
		}
		return fmt.Errorf("%w: %v", errNoLayout, err)
	}
	if len(sig.args) < 1 || !sig.argSlots[0].inRegs || len(sig.argSlots[0].parts) < 2 ||
		sig.argSlots[0].parts[0].reg != abiRAX || sig.argSlots[0].parts[1].reg != abiRBX {
		return fmt.Errorf("%s: its first argument is not a slice in RAX, RBX", symHeaderLine)
	}
	return nil
}

// checkInject checks roundTrip's receiver, a *persistConn, in RAX, and
// persistConnWriter.Write's receiver in RAX, a struct that is that one
// pointer: both programs key the request's context by that address.
func checkInject(b *Binary) error {
	typ, err := argIn(b, symRoundTrip, "", abiRAX)
	if err != nil {
		return err
	}
	conn, ok := pointee(typ)
	if !ok || conn.StructName != "net/http.persistConn" {
		return fmt.Errorf("%s: the receiver is not a *net/http.persistConn", symRoundTrip)
	}
	typ, err = argIn(b, symConnWrite, "", abiRAX)
	if err != nil {
		return err
	}
	w, ok := unwrapTypedef(typ).(*dwarf.StructType)
	if !ok || len(w.Field) != 1 || w.Field[0].ByteOffset != 0 {
		return fmt.Errorf("%s: the receiver is not a struct of one field", symConnWrite)
	}
	if pc, ok := pointee(w.Field[0].Type); !ok || pc.StructName != "net/http.persistConn" {
		return fmt.Errorf("%s: the receiver's field is not a *net/http.persistConn", symConnWrite)
	}
	return nil
}
