package probes

import (
	"debug/dwarf"
	"fmt"
	"strings"
)

// maxLocationOffsets bounds Location.Offsets: the kernel program follows at
// most this many offsets (one per pointer hop plus the final one), so its
// loop stays bounded for the verifier.
const maxLocationOffsets = 4

// fieldCursor walks a field path. While the value is still inside a
// register-assigned parameter, regs holds the parameter's pieces and off
// the byte offset of the current value within it; once a pointer is
// followed the value is in memory at loc.
type fieldCursor struct {
	typ   dwarf.Type
	inReg bool
	parts []abiPart
	off   int64
	loc   Location
	// result is set on a result, read at return, for error messages.
	result bool
}

// when says when the value is read, for error messages.
func (c *fieldCursor) when() string {
	if c.result {
		return "at return"
	}
	return "at entry"
}

// startCursor places the cursor on a whole parameter or result.
func startCursor(slot abiSlot, t dwarf.Type) fieldCursor {
	if slot.inRegs {
		return fieldCursor{typ: t, inReg: true, parts: slot.parts}
	}
	// SP points at the return address both at entry and at a RET; the
	// stack-assigned values start just above it.
	return fieldCursor{typ: t, loc: Location{Base: RegSP, Offsets: []int64{ptrSize + slot.stackOff}}}
}

// selectPath follows field selectors like Go does: through structs, with
// pointers dereferenced automatically and promoted fields of embedded
// structs found.
func (c *fieldCursor) selectPath(path []string) error {
	for i, name := range path {
		sofar := strings.Join(path[:i], ".")
		if err := c.deref(sofar); err != nil {
			return err
		}
		st, ok := unwrapTypedef(c.typ).(*dwarf.StructType)
		if !ok || goStructKind(st) != structPlain {
			return fmt.Errorf("cannot select .%s: the value%s is a %s, not a struct or pointer to one: %w", name, pathSuffix(sofar), typeName(c.typ), ErrInvalidSpec)
		}
		off, ft, ok := findField(st, name, 0)
		if !ok {
			return fmt.Errorf("type %s has no field %s%s (fields: %s): %w", typeName(c.typ), name, pathSuffix(sofar), fieldNames(st), ErrInvalidSpec)
		}
		c.typ = ft
		if c.inReg {
			c.off += off
		} else {
			c.loc.Offsets[len(c.loc.Offsets)-1] += off
		}
	}
	return nil
}

// deref follows a pointer value, if the current value is one: the pointer
// becomes the base of a memory location.
func (c *fieldCursor) deref(sofar string) error {
	pt, ok := unwrapTypedef(c.typ).(*dwarf.PtrType)
	if !ok {
		return nil
	}
	if _, isVoid := pt.Type.(*dwarf.VoidType); isVoid || pt.Type == nil {
		return fmt.Errorf("the value%s is an untyped pointer; its fields are unknown: %w", pathSuffix(sofar), ErrInvalidSpec)
	}
	if c.inReg {
		p, err := c.regParts(ptrSize, sofar)
		if err != nil {
			return err
		}
		c.inReg, c.parts = false, nil
		c.loc = Location{Base: Reg(p[0].reg), Offsets: []int64{0}}
	} else {
		if len(c.loc.Offsets) >= maxLocationOffsets {
			return fmt.Errorf("the path%s follows too many pointers: the kernel follows at most %d (%d from a value passed on the stack); read a shorter path: %w", pathSuffix(sofar), maxLocationOffsets, maxLocationOffsets-1, ErrNotSupported)
		}
		c.loc.Offsets = append(c.loc.Offsets, 0)
	}
	c.typ = pt.Type
	return nil
}

// regParts returns the register pieces covering the current value, which
// must be size bytes of integer registers.
func (c *fieldCursor) regParts(size int64, sofar string) ([]abiPart, error) {
	var out []abiPart
	for _, p := range c.parts {
		if p.off < c.off || p.off >= c.off+size {
			continue
		}
		if p.float {
			return nil, fmt.Errorf("the value%s is a %s in float register X%d %s, which uprobes cannot read (the kernel saves only integer registers); read it through a pointer instead, e.g. a field of a struct passed or returned by pointer: %w",
				pathSuffix(sofar), typeName(c.typ), p.reg, c.when(), ErrNotSupported)
		}
		if p.reg >= int(RegSP) {
			// arm64 passes up to sixteen integers in registers; the
			// kernel program reads the first nine (the Reg values).
			return nil, fmt.Errorf("the value%s is in integer register %d %s, beyond the %d the kernel program reads: %w", pathSuffix(sofar), p.reg, c.when(), RegSP, ErrNotSupported)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the value%s occupies no register (zero-sized): %w", pathSuffix(sofar), ErrInvalidSpec)
	}
	return out, nil
}

// finish derefs a final pointer to a readable value and returns the
// value's location, kind and size.
func (c *fieldCursor) finish(path []string) (Location, ValueKind, uint8, error) {
	sofar := strings.Join(path, ".")
	if pt, ok := unwrapTypedef(c.typ).(*dwarf.PtrType); ok {
		if k, _, _ := valueKind(pt.Type); k != 0 {
			if err := c.deref(sofar); err != nil {
				return Location{}, 0, 0, err
			}
		}
	}
	kind, size, err := valueKind(c.typ)
	if err != nil {
		return Location{}, 0, 0, fmt.Errorf("the value%s: %w", pathSuffix(sofar), err)
	}
	if !c.inReg {
		return c.loc, kind, size, nil
	}
	parts, err := c.regParts(unwrapTypedef(c.typ).Size(), sofar)
	if err != nil {
		return Location{}, 0, 0, err
	}
	if len(parts) > 3 {
		return Location{}, 0, 0, fmt.Errorf("the value%s spans %d registers: %w", pathSuffix(sofar), len(parts), ErrNotSupported)
	}
	loc := Location{InRegs: true, NRegs: uint8(len(parts))}
	for i, p := range parts {
		loc.Regs[i] = Reg(p.reg)
	}
	return loc, kind, size, nil
}

// valueKind maps a Go type to how the kernel reads it and the size of a
// scalar (0 for strings, slices and interfaces, whose word count the kind
// implies, as Fetch.Size documents). Pointers are rejected here; finish
// dereferences them first.
func valueKind(t dwarf.Type) (ValueKind, uint8, error) {
	u := unwrapTypedef(t)
	switch u := u.(type) {
	case *dwarf.BoolType:
		return KindBool, 1, nil
	case *dwarf.IntType:
		return KindInt, uint8(u.Size()), nil
	case *dwarf.UintType, *dwarf.UcharType:
		return KindUint, uint8(u.Size()), nil
	case *dwarf.CharType:
		return KindInt, uint8(u.Size()), nil
	case *dwarf.FloatType:
		return KindFloat, uint8(u.Size()), nil
	case *dwarf.StructType:
		switch goStructKind(u) {
		case structString:
			return KindString, 0, nil
		case structSlice:
			if len(u.Field) > 0 {
				if ep, ok := unwrapTypedef(u.Field[0].Type).(*dwarf.PtrType); ok {
					if es, ok := unwrapTypedef(ep.Type).(*dwarf.StructType); ok && goStructKind(es) == structString {
						return KindStringSlice, 0, nil
					}
				}
			}
			return 0, 0, fmt.Errorf("%s is a slice other than []string: %w (select a field or use a []string)", typeName(t), ErrNotSupported)
		case structIface:
			if name := typeName(t); name != "error" {
				// Any other interface (http.ResponseWriter) would be
				// decoded as an error and print "(error)".
				return 0, 0, fmt.Errorf("%s is an interface other than error: %w; select a field of a concrete type instead", name, ErrNotSupported)
			}
			return KindError, 0, nil
		case structEface:
			// The first word of an empty interface is a type, not an
			// itab, so neither the error decoding nor ItabType applies.
			return 0, 0, fmt.Errorf("%s is an empty interface (any): %w; select a concrete field instead", typeName(t), ErrNotSupported)
		}
		return 0, 0, fmt.Errorf("%s is a struct; select one of its fields (%s): %w", typeName(t), fieldNames(u), ErrInvalidSpec)
	case *dwarf.PtrType:
		// Go's DWARF gives maps and channels as typedefs of pointers to
		// runtime structures: they have no field to select.
		if name := typeName(t); strings.HasPrefix(name, "map[") || strings.HasPrefix(name, "chan ") || strings.HasPrefix(name, "<-chan ") || strings.HasPrefix(name, "chan<- ") {
			return 0, 0, fmt.Errorf("%s is a map or channel, which cannot be read: %w; select another value", name, ErrNotSupported)
		}
		return 0, 0, fmt.Errorf("%s is a pointer; select a field of what it points to: %w", typeName(t), ErrInvalidSpec)
	}
	return 0, 0, fmt.Errorf("%s (%T): %w", typeName(t), u, ErrNotSupported)
}

// structKind distinguishes the runtime's structs (string, slice,
// interface headers) from user structs; Go's DWARF names them "string",
// "[]T", runtime.iface (non-empty interfaces) and runtime.eface (any).
type structKind int

const (
	structPlain structKind = iota
	structString
	structSlice
	structIface
	structEface
)

func goStructKind(st *dwarf.StructType) structKind {
	switch name := st.StructName; {
	case name == "string":
		return structString
	case strings.HasPrefix(name, "[]"):
		return structSlice
	case name == "runtime.iface":
		return structIface
	case name == "runtime.eface":
		return structEface
	}
	// A named string or slice type (type WeakString string, type Tags
	// []string) carries its own name but the runtime's header: the same
	// fields, so it is read like its underlying type.
	switch {
	case hasFields(st, "str", "len") && isBytePtr(st.Field[0].Type) && isGoInt(st.Field[1].Type):
		return structString
	case hasFields(st, "array", "len", "cap") && isPtr(st.Field[0].Type) && isGoInt(st.Field[1].Type) && isGoInt(st.Field[2].Type):
		return structSlice
	}
	return structPlain
}

// hasFields reports whether st has exactly these fields, in this order, at
// consecutive word offsets (the runtime's string and slice headers).
func hasFields(st *dwarf.StructType, names ...string) bool {
	if len(st.Field) != len(names) || st.ByteSize != int64(8*len(names)) {
		return false
	}
	for i, f := range st.Field {
		if f.Name != names[i] || f.ByteOffset != int64(8*i) {
			return false
		}
	}
	return true
}

func isPtr(t dwarf.Type) bool {
	_, ok := unwrapTypedef(t).(*dwarf.PtrType)
	return ok
}

func isBytePtr(t dwarf.Type) bool {
	p, ok := unwrapTypedef(t).(*dwarf.PtrType)
	if !ok {
		return false
	}
	u, ok := unwrapTypedef(p.Type).(*dwarf.UintType)
	return ok && u.Size() == 1
}

func isGoInt(t dwarf.Type) bool {
	i, ok := unwrapTypedef(t).(*dwarf.IntType)
	return ok && i.Size() == 8
}

// findField finds a field by name, then promoted through embedded fields
// (Go's DWARF names an embedded field after its type), breadth-first like
// the Go selector rules.
func findField(st *dwarf.StructType, name string, depth int) (int64, dwarf.Type, bool) {
	for _, f := range st.Field {
		if f.Name == name {
			return f.ByteOffset, f.Type, true
		}
	}
	if depth > 8 {
		return 0, nil, false
	}
	for _, f := range st.Field {
		if f.Name != lastElem(typeName(f.Type)) {
			continue // not embedded
		}
		// Only embedded structs by value: promoting through an embedded
		// pointer would need a hop the selector does not show.
		inner, ok := unwrapTypedef(f.Type).(*dwarf.StructType)
		if !ok || goStructKind(inner) != structPlain {
			continue
		}
		if off, t, ok := findField(inner, name, depth+1); ok {
			return f.ByteOffset + off, t, true
		}
	}
	return 0, nil, false
}

func fieldNames(st *dwarf.StructType) string {
	names := make([]string, 0, len(st.Field))
	for _, f := range st.Field {
		names = append(names, f.Name)
	}
	return strings.Join(names, ", ")
}

// typeName is the Go name of a DWARF type.
func typeName(t dwarf.Type) string {
	if t == nil {
		return "<nil>"
	}
	switch t := t.(type) {
	case *dwarf.TypedefType:
		return t.Name
	case *dwarf.StructType:
		return t.StructName
	}
	return strings.TrimPrefix(t.String(), "struct ")
}

func pathSuffix(sofar string) string {
	if sofar == "" {
		return ""
	}
	return " ." + sofar
}
