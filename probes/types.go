package probes

import (
	"debug/dwarf"
	"fmt"
	"strings"
)

// maxTypeSuggestions bounds the close names offered for a missing type.
const maxTypeSuggestions = 3

// namedType finds a type by its Go name in DWARF (Go names types with
// their import path: "net/http.Request"). Each call walks the type
// entries; it serves the list command, not the attach path.
func (d *dwarfInfo) namedType(name string) (dwarf.Type, dwarf.Offset, error) {
	r := d.data.Reader()
	names := map[string]funcSym{} // for suggestions; only the key is used
	for {
		e, err := r.Next()
		if err != nil {
			return nil, 0, fmt.Errorf("read DWARF types: %w", err)
		}
		if e == nil {
			break
		}
		switch e.Tag {
		case dwarf.TagCompileUnit:
			continue
		case dwarf.TagStructType, dwarf.TagTypedef, dwarf.TagBaseType, dwarf.TagPointerType,
			dwarf.TagArrayType, dwarf.TagSubroutineType:
			n, _ := e.Val(dwarf.AttrName).(string)
			if n == "" {
				break
			}
			n = unescapeSymbol(n)
			if n == name {
				t, err := d.data.Type(e.Offset)
				if err != nil {
					return nil, 0, fmt.Errorf("read DWARF type %s: %w", name, err)
				}
				return t, e.Offset, nil
			}
			names[n] = funcSym{}
		}
		if e.Children {
			r.SkipChildren()
		}
	}
	msg := fmt.Sprintf("type %s: not in the binary's DWARF", name)
	if s := closeNames(name, names, maxTypeSuggestions); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	} else {
		msg += "; write it with its import path, e.g. net/http.Request"
	}
	return nil, 0, fmt.Errorf("%s: %w", msg, ErrSymbolNotFound)
}

// attrGoEmbeddedField is DW_AT_go_embedded_field, which the Go compiler
// sets on the members of a struct that are embedded fields
// (cmd/internal/dwarf); debug/dwarf has no name for it.
const attrGoEmbeddedField dwarf.Attr = 0x2903

// embeddedFields returns the names of the embedded fields of the struct
// whose DIE is at off.
func (d *dwarfInfo) embeddedFields(off dwarf.Offset) (map[string]bool, error) {
	r := d.data.Reader()
	r.Seek(off)
	st, err := r.Next()
	if err != nil || st == nil || !st.Children {
		return nil, err
	}
	out := map[string]bool{}
	for {
		e, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("read DWARF members: %w", err)
		}
		if e == nil || e.Tag == 0 {
			return out, nil
		}
		if e.Tag == dwarf.TagMember {
			if emb, _ := e.Val(attrGoEmbeddedField).(bool); emb {
				n, _ := e.Val(dwarf.AttrName).(string)
				out[n] = true
			}
		}
		if e.Children {
			r.SkipChildren()
		}
	}
}

// kindOf names the Go kind of a DWARF type for listings.
func kindOf(t dwarf.Type) string {
	switch u := unwrapTypedef(t).(type) {
	case *dwarf.StructType:
		switch goStructKind(u) {
		case structString:
			return "string"
		case structSlice:
			return "slice"
		case structIface:
			return "interface"
		case structEface:
			return "any"
		}
		return "struct"
	case *dwarf.PtrType:
		return "pointer"
	case *dwarf.ArrayType:
		return "array"
	case *dwarf.FuncType:
		return "func"
	case *dwarf.BoolType:
		return "bool"
	case *dwarf.FloatType:
		return "float"
	case *dwarf.IntType, *dwarf.CharType:
		return "int"
	case *dwarf.UintType, *dwarf.UcharType:
		return "uint"
	}
	return fmt.Sprintf("%T", t)
}
