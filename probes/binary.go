package probes

import (
	"bytes"
	"crypto/sha256"
	"debug/dwarf"
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Binary is an opened target executable: its functions (from the ELF
// symbol table, or the Go pclntab when the symbol table was stripped), its
// executable segments for address-to-file-offset translation, and its
// DWARF, loaded on first use. Its methods are safe for concurrent use.
type Binary struct {
	// Path is the file the binary was opened from.
	Path string
	// BuildID identifies the binary: "go:" and the Go build id, else
	// "gnu:" and the ELF GNU build id in hex, else "sha256:" and a hash of
	// the file. Two processes with the same BuildID run the same code at the
	// same offsets.
	BuildID string

	file *os.File
	elf  *elf.File
	arch Arch
	// funcs is keyed by the unescaped name (see unescapeSymbol).
	funcs map[string]funcSym
	// itabs maps the address of a go:itab.<type>,<iface> symbol to <type>.
	itabs map[uint64]string
	// errVars are the package-level error variables (see ReadSentinels).
	errVars []errVar

	dwarfOnce sync.Once
	dwarf     *dwarfInfo
	dwarfErr  error
	// rtypes names runtime type descriptors, for itabs without symbols
	// (itab.go); typesBase is where the descriptors start (runtime.types),
	// which DWARF's runtime type offsets count from.
	rtypes    runtimeTypeNames
	typesBase uint64

	closeOnce sync.Once
	closeErr  error
}

// funcSym is a function's address range and its name as the binary
// spells it.
type funcSym struct {
	name       string
	addr, size uint64
}

// Function is one function of a Binary, with the file offsets uprobes are
// placed at (uprobes take offsets into the file, not virtual addresses).
type Function struct {
	// Name is the symbol name, e.g. "main.(*Server).handle".
	Name string
	// Address is the virtual address of the first instruction.
	Address uint64
	// Size is the length of the body in bytes.
	Size uint64
	// SymbolOffset is the file offset of the first instruction.
	SymbolOffset uint64
	// EntryOffset is the file offset of the first instruction after the
	// stack-growth check (normally PUSH BP); SymbolOffset when there is no
	// check. Arguments are still in their registers there.
	EntryOffset uint64
	// EntryEmulated is set when the kernel emulates the instruction at
	// EntryOffset instead of single-stepping it.
	EntryEmulated bool
	// ReturnOffsets are the file offsets of every RET instruction.
	ReturnOffsets []uint64
}

// OpenBinary opens an ELF executable and reads its function symbols.
// DWARF is read later, only when a probe needs argument locations.
func OpenBinary(path string) (*Binary, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open binary: %w", err)
	}
	b, err := newBinary(path, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return b, nil
}

func newBinary(path string, f *os.File) (*Binary, error) {
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, fmt.Errorf("read ELF %s: %w", path, err)
	}
	arch, err := archFor(ef.Machine)
	if err != nil {
		return nil, fmt.Errorf("binary %s: %w", path, err)
	}
	b := &Binary{Path: path, file: f, elf: ef, arch: arch}
	if err := b.readSymbols(); err != nil {
		return nil, fmt.Errorf("binary %s: %w", path, err)
	}
	if b.BuildID, err = buildID(ef, f); err != nil {
		return nil, fmt.Errorf("binary %s: %w", path, err)
	}
	return b, nil
}

// Close releases the file. It is safe to call more than once.
func (b *Binary) Close() error {
	b.closeOnce.Do(func() { b.closeErr = b.file.Close() })
	return b.closeErr
}

// readSymbols fills funcs and itabs from .symtab, falling back to the
// pclntab (which stripping with -s keeps, since the runtime needs it).
func (b *Binary) readSymbols() error {
	b.funcs = make(map[string]funcSym)
	b.itabs = make(map[uint64]string)
	syms, err := b.elf.Symbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return fmt.Errorf("read symbol table: %w", err)
	}
	for _, s := range syms {
		switch {
		case elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value != 0:
			if key := unescapeSymbol(s.Name); b.funcs[key].name == "" {
				b.funcs[key] = funcSym{name: s.Name, addr: s.Value, size: s.Size}
			}
		case s.Name == "runtime.types":
			b.typesBase = s.Value
		case strings.HasPrefix(s.Name, "go:itab."):
			if typ, ok := itabConcrete(strings.TrimPrefix(s.Name, "go:itab.")); ok {
				b.itabs[s.Value] = unescapeSymbol(typ)
			}
		case elf.ST_TYPE(s.Info) == elf.STT_OBJECT && len(b.errVars) < maxSentinels && isErrVar(s.Name, s.Size):
			b.errVars = append(b.errVars, errVar{name: s.Name, addr: s.Value})
		}
	}
	if len(b.funcs) > 0 {
		return nil
	}
	return b.readPclntab()
}

func (b *Binary) readPclntab() error {
	pcln, text := b.elf.Section(".gopclntab"), b.elf.Section(".text")
	if pcln == nil || text == nil {
		return fmt.Errorf("not a Go binary (no symbol table and no .gopclntab): %w", ErrSymbolNotFound)
	}
	data, err := pcln.Data()
	if err != nil {
		return fmt.Errorf("read .gopclntab: %w", err)
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		return fmt.Errorf("parse .gopclntab: %w", err)
	}
	for _, fn := range tab.Funcs {
		if key := unescapeSymbol(fn.Name); b.funcs[key].name == "" && fn.End > fn.Entry {
			b.funcs[key] = funcSym{name: fn.Name, addr: fn.Entry, size: fn.End - fn.Entry}
		}
	}
	return nil
}

// itabConcrete splits "<type>,<iface>" at the last comma outside brackets,
// parentheses and braces (generic type names and interface literals such
// as "interface { f() (string, bool) }" contain commas).
func itabConcrete(s string) (string, bool) {
	depth := 0
	for i := len(s) - 1; i >= 0; i-- {
		switch s[i] {
		case ']', ')', '}':
			depth++
		case '[', '(', '{':
			depth--
		case ',':
			if depth == 0 {
				return s[:i], i > 0
			}
		}
	}
	return "", false
}

// ItabType maps the address of an itab (the first word of a non-empty
// interface value, such as an error) to its concrete type's name, e.g.
// "*errors.errorString". It needs the symbol table's go:itab symbols, or,
// for Go 1.27 and later, which link itabs without them, DWARF (itab.go).
func (b *Binary) ItabType(addr uint64) (string, bool) {
	if t, ok := b.itabs[addr]; ok {
		return t, true
	}
	if len(b.itabs) > 0 {
		return "", false // the linker named itabs: this address is none
	}
	return b.itabTypeFromDescriptor(addr)
}

// Function resolves a function by its full name, as Go source spells it
// ("gopkg.in/yaml.v3.Unmarshal") or as the symbol table does
// ("gopkg.in/yaml%2ev3.Unmarshal"); Function.Name is the latter.
func (b *Binary) Function(name string) (*Function, error) {
	sym, ok := b.funcs[unescapeSymbol(name)]
	if !ok {
		if b.inlinedOnly(name) {
			return nil, fmt.Errorf("function %s in %s: %w: it has no body of its own; add //go:noinline to it or probe its caller", name, b.Path, ErrInlined)
		}
		return nil, &SymbolNotFoundError{Symbol: name, Binary: b.Path, Suggestions: closeNames(name, b.funcs, 3)}
	}
	if sym.size == 0 {
		return nil, fmt.Errorf("function %s in %s: symbol has size 0, so its instructions cannot be found: %w", name, b.Path, ErrNotSupported)
	}
	off, err := b.fileOffset(sym.addr, sym.size)
	if err != nil {
		return nil, fmt.Errorf("function %s: %w", name, err)
	}
	code := make([]byte, sym.size)
	if _, err := b.file.ReadAt(code, int64(off)); err != nil {
		return nil, fmt.Errorf("function %s: read %d bytes at file offset %#x: %w", name, sym.size, off, err)
	}
	skip, emulated, err := b.arch.DecodePrologue(code)
	if err != nil {
		return nil, fmt.Errorf("function %s: %w", name, err)
	}
	rets, err := b.arch.FindReturns(code)
	if err != nil {
		return nil, fmt.Errorf("function %s: find returns: %w", name, err)
	}
	fn := &Function{
		Name:          sym.name,
		Address:       sym.addr,
		Size:          sym.size,
		SymbolOffset:  off,
		EntryOffset:   off + uint64(skip),
		EntryEmulated: emulated,
	}
	for _, r := range rets {
		fn.ReturnOffsets = append(fn.ReturnOffsets, off+uint64(r))
	}
	return fn, nil
}

// fileOffset translates a virtual address range to a file offset through
// the executable PT_LOAD segment containing it.
func (b *Binary) fileOffset(addr, size uint64) (uint64, error) {
	for _, p := range b.elf.Progs {
		if p.Type != elf.PT_LOAD || p.Flags&elf.PF_X == 0 {
			continue
		}
		if addr >= p.Vaddr && addr+size <= p.Vaddr+p.Filesz {
			return addr - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("address %#x+%d is in no executable segment of %s", addr, size, b.Path)
}

// inlinedOnly reports whether DWARF describes name only as an abstract
// (inlined) function. Without DWARF the question cannot be answered and the
// caller reports the symbol as missing.
func (b *Binary) inlinedOnly(name string) bool {
	d, err := b.dwarfInfo()
	if err != nil {
		return false
	}
	sp, ok := d.subprograms[unescapeSymbol(name)]
	return ok && sp.inlined && !sp.concrete
}

// unescapeSymbol undoes the linker's escaping of import paths in symbol
// names (cmd/internal/objabi.PathToPrefix): a dot in the last path
// element, '%', '"', control and non-ASCII bytes are written %xx, so
// gopkg.in/yaml.v3 appears as gopkg.in/yaml%2ev3 in symbols and DWARF.
func unescapeSymbol(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				sb.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		sb.WriteByte(s[i])
	}
	return sb.String()
}

// dwarfInfo loads the DWARF once.
func (b *Binary) dwarfInfo() (*dwarfInfo, error) {
	b.dwarfOnce.Do(func() {
		b.dwarf, b.dwarfErr = loadDWARF(b.elf)
		if b.dwarfErr != nil {
			b.dwarfErr = fmt.Errorf("binary %s: %w", b.Path, b.dwarfErr)
		}
	})
	return b.dwarf, b.dwarfErr
}

// buildID reads the Go build id note, else the GNU build id note, else
// hashes the file.
func buildID(ef *elf.File, f *os.File) (string, error) {
	if data, err := sectionData(ef, ".note.go.buildid"); err == nil {
		if id, ok := noteDesc(data, "Go"); ok {
			return "go:" + string(bytes.TrimRight(id, "\x00")), nil
		}
	}
	if data, err := sectionData(ef, ".note.gnu.build-id"); err == nil {
		if id, ok := noteDesc(data, "GNU"); ok {
			return "gnu:" + hex.EncodeToString(id), nil
		}
	}
	return hashID(f)
}

// hashID is the build id of a file without a build-id note.
func hashID(f *os.File) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<62)); err != nil {
		return "", fmt.Errorf("hash file for a build id: %w", err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// ReadBuildID returns the build id of the executable at path, as
// Binary.BuildID reports it, without reading symbols or DWARF; a file that
// is not ELF is identified by its hash.
func ReadBuildID(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read build id: %w", err)
	}
	defer f.Close()
	ef, err := elf.NewFile(f)
	if err != nil {
		return hashID(f)
	}
	return buildID(ef, f)
}

// sectionData reads a section's bytes.
func sectionData(ef *elf.File, name string) ([]byte, error) {
	s := ef.Section(name)
	if s == nil {
		return nil, fmt.Errorf("no section %s", name)
	}
	return s.Data()
}

// noteDesc returns the descriptor of the first ELF note owned by owner:
// namesz, descsz, type (4 bytes each), then the name and the descriptor,
// each padded to 4 bytes.
func noteDesc(data []byte, owner string) ([]byte, bool) {
	pad := func(n uint32) uint64 { return (uint64(n) + 3) &^ 3 }
	for len(data) >= 12 {
		namesz := binary.LittleEndian.Uint32(data[0:])
		descsz := binary.LittleEndian.Uint32(data[4:])
		data = data[12:]
		if pad(namesz)+pad(descsz) > uint64(len(data)) {
			return nil, false
		}
		name := strings.TrimRight(string(data[:namesz]), "\x00")
		desc := data[pad(namesz) : pad(namesz)+uint64(descsz)]
		if name == owner {
			return desc, true
		}
		data = data[pad(namesz)+pad(descsz):]
	}
	return nil, false
}

// dwarfData opens the DWARF sections; Go compresses them, which debug/elf
// handles.
func dwarfData(ef *elf.File) (*dwarf.Data, error) {
	if ef.Section(".debug_info") == nil && ef.Section(".zdebug_info") == nil {
		if ef.Section(".symtab") == nil {
			// strip(1) and -ldflags=-s both drop the symbol table too;
			// -w alone keeps it.
			return nil, fmt.Errorf("%w (it was stripped: by strip(1) or -ldflags=\"-s -w\"; trace the unstripped build to read arguments and fields)", ErrNoDWARF)
		}
		return nil, fmt.Errorf("%w (it was built with -ldflags=-w; rebuild without -w to read arguments and fields)", ErrNoDWARF)
	}
	d, err := ef.DWARF()
	if err != nil {
		return nil, fmt.Errorf("read DWARF: %w", err)
	}
	return d, nil
}

// closeNames suggests up to n function names close to name: names ending
// in it (a missing import path), then names with the same last element (a
// wrong package or receiver), then by edit distance.
func closeNames(name string, funcs map[string]funcSym, n int) []string {
	type cand struct {
		name  string
		score int
	}
	var cands []cand
	last := lastElem(name)
	limit := max(3, len(name)/4)
	for f := range funcs {
		switch {
		case strings.HasSuffix(f, "."+name) || strings.HasSuffix(f, "/"+name):
			cands = append(cands, cand{f, -1000 + len(f)})
		case lastElem(f) == last:
			cands = append(cands, cand{f, editDistance(name, f, 1<<20)})
		default:
			if d := editDistance(name, f, limit); d <= limit {
				cands = append(cands, cand{f, d + 1000})
			}
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].score != cands[j].score {
			return cands[i].score < cands[j].score
		}
		return cands[i].name < cands[j].name
	})
	var out []string
	for i := 0; i < len(cands) && i < n; i++ {
		out = append(out, cands[i].name)
	}
	return out
}

// lastElem is the function or method name after the last dot.
func lastElem(s string) string {
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// editDistance is the Levenshtein distance of a and b, or limit+1 once it
// is certain to exceed limit (most names are far apart; stopping early
// keeps suggestions cheap on binaries with tens of thousands of symbols).
func editDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d > limit || -d > limit {
		return limit + 1
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin > limit {
			return limit + 1
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
