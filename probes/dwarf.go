package probes

import (
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"slices"
	"strings"
)

// dwarfInfo is a binary's DWARF with an index of its functions.
type dwarfInfo struct {
	data *dwarf.Data
	// subprograms maps a function name, unescaped (see unescapeSymbol), to
	// its DIEs.
	subprograms map[string]subprogram
}

// subprogram locates a function's DIEs. The Go compiler describes a
// function that is inlined somewhere by an abstract DIE (DW_AT_inline,
// with the name and parameters) and its out-of-line body, if any, by a
// concrete DIE pointing at it through DW_AT_abstract_origin.
type subprogram struct {
	// die is the concrete DIE when there is a body (its parameters may
	// refer to the abstract DIE's for names and types), else the abstract
	// one.
	die dwarf.Offset
	// concrete is set when an out-of-line body exists.
	concrete bool
	// inlined is set when the function is inlined at some call site.
	inlined bool
	// pkg is the import path of the package (Go's DWARF has one compile
	// unit per package, named by its path), to split "pkg.Name" exactly:
	// paths like gopkg.in/yaml.v3 contain dots.
	pkg string
}

// loadDWARF reads the DWARF and indexes its subprograms by name.
func loadDWARF(ef *elf.File) (*dwarfInfo, error) {
	data, err := dwarfData(ef)
	if err != nil {
		return nil, err
	}
	info := &dwarfInfo{data: data, subprograms: make(map[string]subprogram)}
	abstractNames := make(map[dwarf.Offset]string)
	concreteOf := make(map[dwarf.Offset]dwarf.Offset) // abstract -> concrete
	var cu string
	cuOf := make(map[dwarf.Offset]string)
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
			cu, _ = e.Val(dwarf.AttrName).(string)
			continue // descend into the unit's children
		}
		if e.Tag == dwarf.TagSubprogram {
			name, _ := e.Val(dwarf.AttrName).(string)
			name = unescapeSymbol(name)
			_, hasPC := e.Val(dwarf.AttrLowpc).(uint64)
			origin, hasOrigin := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
			_, isAbstract := e.Val(dwarf.AttrInline).(int64)
			switch {
			case isAbstract && name != "":
				abstractNames[e.Offset] = name
				if !info.subprograms[name].concrete {
					info.subprograms[name] = subprogram{die: e.Offset, inlined: true, pkg: cu}
				}
			case hasOrigin && hasPC:
				concreteOf[origin] = e.Offset
				cuOf[e.Offset] = cu
			case name != "" && hasPC:
				info.subprograms[name] = subprogram{die: e.Offset, concrete: true, pkg: cu}
			}
		}
		if e.Children {
			r.SkipChildren()
		}
	}
	for abstract, concrete := range concreteOf {
		if name, ok := abstractNames[abstract]; ok {
			info.subprograms[name] = subprogram{die: concrete, concrete: true, inlined: true, pkg: cuOf[concrete]}
		}
	}
	return info, nil
}

// param is one parameter or result of a function, in declaration order.
type param struct {
	name   string
	typ    dwarf.Type
	result bool
}

// signature is a function's parameters as DWARF declares them, split into
// receiver, arguments and results, with their ABI assignment.
type signature struct {
	receiver *param
	args     []param
	results  []param
	// recvSlot, argSlots and resultSlots say where each value is at entry
	// (receiver and arguments) or at a RET (results).
	recvSlot    abiSlot
	argSlots    []abiSlot
	resultSlots []abiSlot
}

// params lists the formal parameters of the named function from its DWARF
// DIE. DW_AT_variable_parameter marks results (Go names unnamed ones ~r0,
// ~r1...). The compiler can list a variable twice (one entry per location
// range), so repeated names are dropped.
func (d *dwarfInfo) params(name string) ([]param, error) {
	sp, ok := d.subprograms[unescapeSymbol(name)]
	if !ok {
		return nil, fmt.Errorf("function %s has no DWARF description: %w", name, ErrNoDWARF)
	}
	r := d.data.Reader()
	r.Seek(sp.die)
	fn, err := r.Next()
	if err != nil || fn == nil {
		return nil, fmt.Errorf("read DWARF of %s: %v", name, err)
	}
	var out []param
	seen := map[string]bool{}
	for fn.Children {
		e, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("read DWARF parameters of %s: %w", name, err)
		}
		if e == nil || e.Tag == 0 {
			break
		}
		if e.Tag != dwarf.TagFormalParameter {
			if e.Children {
				r.SkipChildren()
			}
			continue
		}
		if origin, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset); ok {
			// A concrete copy of an inlinable function's parameter: name,
			// type and result flag are on the abstract one.
			if e, err = d.entryAt(origin); err != nil {
				return nil, fmt.Errorf("read DWARF parameters of %s: %w", name, err)
			}
		}
		pname, _ := e.Val(dwarf.AttrName).(string)
		if seen[pname] {
			continue
		}
		seen[pname] = true
		toff, ok := e.Val(dwarf.AttrType).(dwarf.Offset)
		if !ok {
			return nil, fmt.Errorf("parameter %s of %s has no DWARF type", pname, name)
		}
		t, err := d.data.Type(toff)
		if err != nil {
			return nil, fmt.Errorf("type of parameter %s of %s: %w", pname, name, err)
		}
		result, _ := e.Val(dwarf.AttrVarParam).(bool)
		out = append(out, param{name: pname, typ: t, result: result})
	}
	return out, nil
}

// entryAt reads the DIE at off.
func (d *dwarfInfo) entryAt(off dwarf.Offset) (*dwarf.Entry, error) {
	r := d.data.Reader()
	r.Seek(off)
	e, err := r.Next()
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, fmt.Errorf("no DWARF entry at %#x", off)
	}
	return e, nil
}

// signature reads a function's parameters and assigns them to registers
// and stack slots with the Go internal ABI.
func (b *Binary) signature(fn string) (*signature, error) {
	d, err := b.dwarfInfo()
	if err != nil {
		return nil, err
	}
	ps, err := d.params(fn)
	if err != nil {
		return nil, err
	}
	fn = unescapeSymbol(fn)
	method := isMethod(fn, d.subprograms[fn].pkg)
	sig := &signature{}
	var ins, outs []dwarf.Type
	dict := -1
	if takesDictionary(fn) {
		dict = 0
	}
	for i, p := range ps {
		switch {
		case p.result:
			sig.results = append(sig.results, p)
			outs = append(outs, p.typ)
		case i == 0 && method:
			sig.receiver = &ps[i]
			ins = append(ins, p.typ)
			if dict == 0 {
				dict = 1
			}
		default:
			sig.args = append(sig.args, p)
			ins = append(ins, p.typ)
		}
	}
	if dict >= 0 {
		ins = slices.Insert(ins, dict, dwarf.Type(&dwarf.PtrType{CommonType: dwarf.CommonType{ByteSize: ptrSize, Name: ".dict"}}))
	}
	inSlots, outSlots, err := assignABIFor(abiFor(b.arch.Name()), ins, outs)
	if err != nil {
		return nil, fmt.Errorf("lay out the parameters of %s: %w", fn, err)
	}
	if dict >= 0 {
		inSlots = slices.Delete(inSlots, dict, dict+1)
	}
	if sig.receiver != nil {
		sig.recvSlot, inSlots = inSlots[0], inSlots[1:]
	}
	sig.argSlots, sig.resultSlots = inSlots, outSlots
	return sig, nil
}

// takesDictionary reports whether a function is a generic function or
// method compiled for a GC shape: it takes a hidden dictionary pointer
// after the receiver (first when there is none), which DWARF does not list.
// The compiler's type:.eq/type:.hash functions of shaped types and closures
// inside generic functions (the dictionary is in their closure) do not.
func takesDictionary(fn string) bool {
	if !strings.Contains(fn, "[go.shape.") && !strings.Contains(fn, ",go.shape.") {
		return false
	}
	if strings.HasPrefix(fn, "type:") {
		return false
	}
	return !isClosureName(lastElem(stripBrackets(fn)))
}

// isMethod tells from a symbol name whether the function has a receiver:
// after the package path, "T.M" or "(*T).M" is a method, while "f" and
// closures ("f.func1", "f.gowrap2", "T.M-fm") are not. pkg is the package
// path when known; otherwise the package name is taken to end at the
// first dot after the last slash.
func isMethod(sym, pkg string) bool {
	var rest string
	if after, ok := strings.CutPrefix(sym, pkg+"."); ok && pkg != "" {
		rest = stripBrackets(after)
	} else {
		rest = stripBrackets(sym)
		if i := strings.LastIndexByte(rest, '/'); i >= 0 {
			rest = rest[i+1:]
		}
		var ok bool
		if _, rest, ok = strings.Cut(rest, "."); !ok { // drop the package name
			return false
		}
	}
	if strings.HasPrefix(rest, "(*") {
		return !isClosureName(lastElem(rest))
	}
	if !strings.Contains(rest, ".") {
		return false
	}
	return !isClosureName(lastElem(rest))
}

// isClosureName matches the compiler's names for closures and wrappers.
func isClosureName(s string) bool {
	if strings.HasSuffix(s, "-fm") {
		return true
	}
	for _, p := range []string{"func", "gowrap", "deferwrap"} {
		if n, ok := strings.CutPrefix(s, p); ok && n != "" && strings.Trim(n, "0123456789") == "" {
			return true
		}
	}
	return false
}

// stripBrackets removes generic instantiation brackets, whose type
// arguments contain dots and slashes.
func stripBrackets(s string) string {
	var sb strings.Builder
	depth := 0
	for _, c := range s {
		switch {
		case c == '[':
			depth++
		case c == ']':
			depth--
		case depth == 0:
			sb.WriteRune(c)
		}
	}
	return sb.String()
}
