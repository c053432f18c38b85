package probes

import (
	"debug/dwarf"
	"debug/elf"
	"fmt"
)

// dwarfInfo is a binary's DWARF with an index of its functions.
type dwarfInfo struct {
	data *dwarf.Data
	// subprograms maps a function name to its DIEs.
	subprograms map[string]subprogram
}

// subprogram locates a function's DIEs. The Go compiler describes a
// function that is inlined somewhere by an abstract DIE (DW_AT_inline,
// with the name and parameters) and its out-of-line body, if any, by a
// concrete DIE pointing at it through DW_AT_abstract_origin.
type subprogram struct {
	// die is the DIE carrying the parameters' names and types: the
	// abstract DIE when there is one, else the concrete one.
	die dwarf.Offset
	// concrete is set when an out-of-line body exists.
	concrete bool
	// inlined is set when the function is inlined at some call site.
	inlined bool
}

// loadDWARF reads the DWARF and indexes its subprograms by name.
func loadDWARF(ef *elf.File) (*dwarfInfo, error) {
	data, err := dwarfData(ef)
	if err != nil {
		return nil, err
	}
	info := &dwarfInfo{data: data, subprograms: make(map[string]subprogram)}
	abstractNames := make(map[dwarf.Offset]string)
	var concreteOrigins []dwarf.Offset
	r := data.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("read DWARF entries: %w", err)
		}
		if e == nil {
			break
		}
		if e.Tag == dwarf.TagCompileUnit {
			continue // descend into the unit's children
		}
		if e.Tag == dwarf.TagSubprogram {
			name, _ := e.Val(dwarf.AttrName).(string)
			_, hasPC := e.Val(dwarf.AttrLowpc).(uint64)
			origin, hasOrigin := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
			_, isAbstract := e.Val(dwarf.AttrInline).(int64)
			switch {
			case isAbstract && name != "":
				abstractNames[e.Offset] = name
				sp := info.subprograms[name]
				sp.die, sp.inlined = e.Offset, true
				info.subprograms[name] = sp
			case hasOrigin && hasPC:
				concreteOrigins = append(concreteOrigins, origin)
			case name != "" && hasPC:
				sp := info.subprograms[name]
				if !sp.inlined {
					sp.die = e.Offset
				}
				sp.concrete = true
				info.subprograms[name] = sp
			}
		}
		if e.Children {
			r.SkipChildren()
		}
	}
	for _, origin := range concreteOrigins {
		if name, ok := abstractNames[origin]; ok {
			sp := info.subprograms[name]
			sp.concrete = true
			info.subprograms[name] = sp
		}
	}
	return info, nil
}
