package probes

import (
	"debug/dwarf"
	"encoding/binary"
	"sync"
)

// Go 1.27's linker no longer names itabs in the symbol table (no
// go:itab.<type>,<iface> symbols), so ItabType cannot look an itab's
// address up by name there. An itab is still
//
//	type itab struct { Inter *interfacetype; Type *_type; ... }
//
// (internal/abi.ITab): its second word is the concrete type's runtime type
// descriptor, whose offset from runtime.types DWARF gives each type it
// describes (DW_AT_go_runtime_type). runtimeTypes maps those addresses to
// the types' Go names; the itab's word is read from the file, where the
// linker wrote it.

// attrGoRuntimeType is DW_AT_go_runtime_type (cmd/internal/dwarf).
const attrGoRuntimeType dwarf.Attr = 0x2904

// maxRuntimeTypes bounds the map of runtime type descriptors kept.
const maxRuntimeTypes = 1 << 20

// runtimeTypeNames is the lazily built map of runtimeTypes.
type runtimeTypeNames struct {
	once  sync.Once
	names map[uint64]string
}

// runtimeTypes walks the DWARF type entries once for their runtime type
// descriptors; nil without DWARF.
func (b *Binary) runtimeTypes() map[uint64]string {
	b.rtypes.once.Do(func() {
		d, err := b.dwarfInfo()
		if err != nil || b.typesBase == 0 {
			return
		}
		names := map[uint64]string{}
		r := d.data.Reader()
		for len(names) < maxRuntimeTypes {
			e, err := r.Next()
			if err != nil || e == nil {
				break
			}
			if e.Tag == dwarf.TagCompileUnit || e.Tag == dwarf.TagSubprogram {
				if e.Tag == dwarf.TagSubprogram && e.Children {
					r.SkipChildren()
				}
				continue
			}
			addr, ok := e.Val(attrGoRuntimeType).(uint64) // offset from runtime.types
			if !ok || addr == 0 {
				continue
			}
			if name, ok := e.Val(dwarf.AttrName).(string); ok && name != "" {
				names[b.typesBase+addr] = name
			}
		}
		b.rtypes.names = names
	})
	return b.rtypes.names
}

// itabTypeFromDescriptor names the concrete type of the itab at addr
// through its type descriptor (see above).
func (b *Binary) itabTypeFromDescriptor(addr uint64) (string, bool) {
	word, ok := b.readWord(addr + ptrSize)
	if !ok || word == 0 {
		return "", false
	}
	names := b.runtimeTypes()
	name, ok := names[word]
	return name, ok
}

// readWord reads the 8-byte little-endian word the file holds at virtual
// address addr.
func (b *Binary) readWord(addr uint64) (uint64, bool) {
	for _, s := range b.elf.Sections {
		if s.Addr == 0 || addr < s.Addr || addr+8 > s.Addr+s.Size || s.Type == 8 /* SHT_NOBITS */ {
			continue
		}
		var buf [8]byte
		if _, err := s.ReadAt(buf[:], int64(addr-s.Addr)); err != nil {
			return 0, false
		}
		return binary.LittleEndian.Uint64(buf[:]), true
	}
	return 0, false
}
