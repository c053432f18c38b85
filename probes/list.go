package probes

import (
	"debug/dwarf"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// FuncInfo describes one function of a binary for writing probes: its
// signature as DWARF declares it and whether a probe can attach to it.
type FuncInfo struct {
	// Name is the function's name with import paths unescaped, as a probe's
	// symbol is written.
	Name string `json:"name"`
	// Receiver is the method's receiver, nil for a function.
	Receiver *ParamInfo `json:"receiver,omitempty"`
	// Params are the arguments in order, without the receiver.
	Params []ParamInfo `json:"params"`
	// Results are the results in order; unnamed ones are ~r0, ~r1...
	Results []ParamInfo `json:"results"`
	// Signature is false when the binary has no DWARF for the function, so
	// Params and Results are unknown.
	Signature bool `json:"signature"`
	// Probeable reports whether a probe can attach to the function.
	Probeable bool `json:"probeable"`
	// Note says why the function cannot be probed, or what a probe on it
	// cannot read; empty when nothing is in the way.
	Note string `json:"note,omitempty"`
}

// ParamInfo is one parameter or result: its name in the source and its Go
// type.
type ParamInfo struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// String formats the function as Go source would declare it, e.g.
// "main.(*Server).handle(s *main.Server, req *net/http.Request) (int, error)".
func (f FuncInfo) String() string {
	if !f.Signature {
		return f.Name
	}
	var sb strings.Builder
	sb.WriteString(f.Name)
	sb.WriteByte('(')
	var ins []ParamInfo
	if f.Receiver != nil {
		ins = append(ins, *f.Receiver)
	}
	ins = append(ins, f.Params...)
	for i, p := range ins {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(p.Name + " " + p.Type)
	}
	sb.WriteByte(')')
	switch len(f.Results) {
	case 0:
	case 1:
		sb.WriteString(" " + f.Results[0].Type)
	default:
		sb.WriteString(" (")
		for i, r := range f.Results {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(r.Type)
		}
		sb.WriteByte(')')
	}
	return sb.String()
}

// Notes on functions that cannot be probed, or only partly.
const (
	noteInlined  = "inlined at every call: no body to probe; add //go:noinline or probe its caller"
	noteNoBody   = "symbol has size 0: no instructions to probe"
	noteAsm      = "assembly (ABI0 wrapper): arguments are on the stack and undescribed; probe its Go caller"
	noteNoDWARF  = "no DWARF for this function (assembly or compiler-generated): only duration and constant attributes"
	noteBinNoDbg = "the binary has no DWARF: signatures unknown; only duration and constant attributes (or an offsets file, see probes extract)"
)

// ListFunctions lists the binary's functions whose name matches match (all
// when nil), sorted by name, with their signatures from DWARF and whether
// they can be probed. Functions the compiler inlined at every call appear
// too, marked not probeable. Without DWARF the names are listed with a note.
func (b *Binary) ListFunctions(match *regexp.Regexp) ([]FuncInfo, error) {
	d, dwarfErr := b.dwarfInfo()
	var out []FuncInfo
	for name, sym := range b.funcs {
		if match != nil && !match.MatchString(name) {
			continue
		}
		fi := FuncInfo{Name: name, Probeable: true}
		switch {
		case sym.size == 0:
			fi.Probeable, fi.Note = false, noteNoBody
		case strings.HasSuffix(name, ".abi0"):
			fi.Probeable, fi.Note = false, noteAsm
		case dwarfErr != nil:
			fi.Note = noteBinNoDbg
		default:
			if _, ok := d.subprograms[name]; !ok {
				fi.Note = noteNoDWARF
			} else if err := b.fillSignature(&fi); err != nil {
				fi.Note = err.Error()
			}
		}
		out = append(out, fi)
	}
	if dwarfErr == nil {
		for name, sp := range d.subprograms {
			if _, ok := b.funcs[name]; ok || sp.concrete || !sp.inlined {
				continue
			}
			if match != nil && !match.MatchString(name) {
				continue
			}
			fi := FuncInfo{Name: name, Note: noteInlined}
			if err := b.fillSignature(&fi); err != nil {
				fi.Note += "; " + err.Error()
			}
			out = append(out, fi)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// fillSignature sets the receiver, parameters and results of fi from DWARF.
func (b *Binary) fillSignature(fi *FuncInfo) error {
	d, err := b.dwarfInfo()
	if err != nil {
		return err
	}
	ps, err := d.params(fi.Name)
	if err != nil {
		return err
	}
	method := isMethod(fi.Name, d.subprograms[fi.Name].pkg)
	fi.Params, fi.Results = []ParamInfo{}, []ParamInfo{}
	for i, p := range ps {
		pi := ParamInfo{Name: p.name, Type: typeName(p.typ)}
		switch {
		case p.result:
			fi.Results = append(fi.Results, pi)
		case i == 0 && method:
			fi.Receiver = &pi
		default:
			fi.Params = append(fi.Params, pi)
		}
	}
	fi.Signature = true
	return nil
}

// FieldInfo is one field of a struct type, for writing field paths.
type FieldInfo struct {
	Name string `json:"name"`
	// Offset is the byte offset within the struct.
	Offset int64 `json:"offset"`
	// Size is the field's size in bytes.
	Size int64  `json:"size"`
	Type string `json:"type"`
	// Embedded is set for an embedded field, whose fields are promoted.
	Embedded bool `json:"embedded,omitempty"`
	// Readable says whether a field path can end at this field (a string,
	// number, bool, []string or error), rather than go through it.
	Readable bool `json:"readable"`
}

// TypeInfo is a named type's layout.
type TypeInfo struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	// Kind is "struct", or the Go kind the name stands for (int, string,
	// pointer...) when it is not a struct.
	Kind   string      `json:"kind"`
	Fields []FieldInfo `json:"fields,omitempty"`
}

// TypeLayout returns the layout of the named type ("net/http.Request",
// "main.Config"; a leading * is ignored) from DWARF. A name not found is
// reported with close names.
func (b *Binary) TypeLayout(name string) (*TypeInfo, error) {
	d, err := b.dwarfInfo()
	if err != nil {
		return nil, err
	}
	name = unescapeSymbol(strings.TrimPrefix(name, "*"))
	t, off, err := d.namedType(name)
	if err != nil {
		return nil, err
	}
	embedded, err := d.embeddedFields(off)
	if err != nil {
		return nil, fmt.Errorf("type %s: %w", name, err)
	}
	ti := &TypeInfo{Name: name, Size: t.Size(), Kind: kindOf(t)}
	if st, ok := unwrapTypedef(t).(*dwarf.StructType); ok && goStructKind(st) == structPlain {
		for _, f := range st.Field {
			_, _, kerr := valueKind(f.Type)
			if pt, ok := unwrapTypedef(f.Type).(*dwarf.PtrType); ok && kerr != nil {
				_, _, kerr = valueKind(pt.Type)
			}
			ti.Fields = append(ti.Fields, FieldInfo{
				Name:     f.Name,
				Offset:   f.ByteOffset,
				Size:     f.Type.Size(),
				Type:     typeName(f.Type),
				Embedded: embedded[f.Name],
				Readable: kerr == nil,
			})
		}
	}
	return ti, nil
}

// String prints the layout one field a line: offset, size, name, type.
func (t *TypeInfo) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "type %s %s (%d bytes)\n", t.Name, t.Kind, t.Size)
	for _, f := range t.Fields {
		mark := ""
		if f.Embedded {
			mark = " (embedded: its fields are promoted)"
		}
		fmt.Fprintf(&sb, "  %6d %5d  %-24s %s%s\n", f.Offset, f.Size, f.Name, f.Type, mark)
	}
	return sb.String()
}
