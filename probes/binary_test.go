package probes

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fixtureFuncs are the fixture's probed functions and how many RET
// instructions each has (counted from `go tool objdump` and the source:
// Status and Greet return on two paths).
var fixtureFuncs = map[string]struct {
	rets       int
	stackCheck bool
}{
	"main.Greet":               {2, true},
	"main.Handle":              {3, true},
	"main.(*Router).Classify":  {2, true},
	"main.Cat.Label":           {1, true},
	"main.Many":                {1, false},
	"main.Status":              {2, false},
	"main.Leaf":                {1, false},
	"main.Fib":                 {2, true},
	"main.Big":                 {1, true},
	"main.Huge":                {1, true},
	"main.(*ModelError).Error": {1, true},
}

func TestFunctionOffsets(t *testing.T) {
	bin := fixtureBinary(t, variantFull)
	b, err := OpenBinary(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	raw, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range fixtureFuncs {
		fn, err := b.Function(name)
		if err != nil {
			t.Errorf("Function(%s): %v", name, err)
			continue
		}
		if fn.Name != name || fn.Size == 0 || fn.Address == 0 {
			t.Errorf("%s: bad function %+v", name, fn)
		}
		// The executable segment of a Go binary maps file offset 0 at
		// 0x400000 (the linker's default text base on linux/amd64).
		if fn.SymbolOffset != fn.Address-0x400000 {
			t.Errorf("%s: SymbolOffset %#x, want address-0x400000 = %#x", name, fn.SymbolOffset, fn.Address-0x400000)
		}
		if len(fn.ReturnOffsets) != want.rets {
			t.Errorf("%s: %d RETs at %#x, want %d", name, len(fn.ReturnOffsets), fn.ReturnOffsets, want.rets)
		}
		for _, off := range fn.ReturnOffsets {
			if off < fn.SymbolOffset || off >= fn.SymbolOffset+fn.Size || raw[off] != 0xC3 {
				t.Errorf("%s: return offset %#x is not a RET (byte %#x) inside the body", name, off, raw[off])
			}
		}
		if want.stackCheck {
			// After the check comes PUSHQ BP (0x55), which uprobes emulate.
			if fn.EntryOffset == fn.SymbolOffset || raw[fn.EntryOffset] != 0x55 || !fn.EntryEmulated {
				t.Errorf("%s: entry %#x (symbol %#x) byte %#x emulated=%v, want past the stack check at PUSHQ BP",
					name, fn.EntryOffset, fn.SymbolOffset, raw[fn.EntryOffset], fn.EntryEmulated)
			}
		} else if fn.EntryOffset != fn.SymbolOffset {
			t.Errorf("%s: entry %#x, want the symbol offset %#x (no stack check)", name, fn.EntryOffset, fn.SymbolOffset)
		}
	}
}

// TestPrologueKinds pins the skipped length of each of the three stack
// check shapes: CMP(4)+JBE rel8(2); LEA(8)+CMP(4)+JBE rel32(6);
// MOV(3)+SUB(7)+JB(6)+CMP(4)+JBE(6).
func TestPrologueKinds(t *testing.T) {
	b := openFixture(t, variantFull)
	for name, skip := range map[string]uint64{"main.Greet": 6, "main.Big": 18, "main.Huge": 26, "main.Leaf": 0} {
		fn, err := b.Function(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := fn.EntryOffset - fn.SymbolOffset; got != skip {
			t.Errorf("%s: prologue skip %d, want %d", name, got, skip)
		}
	}
}

func TestFunctionErrors(t *testing.T) {
	b := openFixture(t, variantFull)
	_, err := b.Function("main.add")
	if !errors.Is(err, ErrInlined) {
		t.Errorf("Function(main.add) = %v, want ErrInlined", err)
	}
	_, err = b.Function("main.Greeet")
	var nf *SymbolNotFoundError
	if !errors.As(err, &nf) || !errors.Is(err, ErrSymbolNotFound) {
		t.Fatalf("Function(main.Greeet) = %v, want SymbolNotFoundError", err)
	}
	if len(nf.Suggestions) == 0 || nf.Suggestions[0] != "main.Greet" {
		t.Errorf("suggestions %q, want main.Greet first", nf.Suggestions)
	}
	if !strings.Contains(err.Error(), "did you mean main.Greet") {
		t.Errorf("message %q does not suggest main.Greet", err)
	}
	// A name without its package path is found by suffix.
	_, err = b.Function("(*Router).Classify")
	if !errors.As(err, &nf) || len(nf.Suggestions) == 0 || nf.Suggestions[0] != "main.(*Router).Classify" {
		t.Errorf("Function((*Router).Classify) = %v, want main.(*Router).Classify suggested", err)
	}
	_, err = b.Function("zzz.qqqqqqqqqqqqqqqqqqqqqqqqqqqqqq")
	if !errors.As(err, &nf) || len(nf.Suggestions) != 0 {
		t.Errorf("unrelated name: %v, want no suggestions", err)
	}
}

func TestStrippedAndNoDWARF(t *testing.T) {
	full := openFixture(t, variantFull)
	for _, v := range []fixtureVariant{variantNoDWARF, variantStripped} {
		b := openFixture(t, v)
		if v == variantStripped && len(b.itabs) != 0 {
			t.Errorf("%s: itabs without a symbol table", v)
		}
		for name := range fixtureFuncs {
			want, err := full.Function(name)
			if err != nil {
				t.Fatal(err)
			}
			got, err := b.Function(name)
			if err != nil {
				t.Fatalf("%s: %v", v, err)
			}
			// -w and -s only drop sections after the code, so the text
			// layout is the full build's. Without .symtab the size comes
			// from the pclntab (up to the next function, padding
			// included), so only the offsets are compared.
			if got.Name != want.Name || got.SymbolOffset != want.SymbolOffset || got.EntryOffset != want.EntryOffset ||
				!reflect.DeepEqual(got.ReturnOffsets, want.ReturnOffsets) {
				t.Errorf("%s: %+v, want %+v", v, got, want)
			}
		}
		if _, err := b.dwarfInfo(); !errors.Is(err, ErrNoDWARF) {
			t.Errorf("%s: dwarf error %v, want ErrNoDWARF", v, err)
		}
		// Without DWARF an inlined function is just missing.
		if _, err := b.Function("main.add"); !errors.Is(err, ErrSymbolNotFound) {
			t.Errorf("%s: Function(main.add) = %v, want ErrSymbolNotFound", v, err)
		}
	}
}

func TestBuildIDAndItab(t *testing.T) {
	bin := fixtureBinary(t, variantFull)
	b := openFixture(t, variantFull)
	out, err := exec.Command("go", "tool", "buildid", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := "go:" + strings.TrimSpace(string(out)); b.BuildID != got {
		t.Errorf("BuildID %q, want %q", b.BuildID, got)
	}
	if id, err := ReadBuildID(bin); err != nil || id != b.BuildID {
		t.Errorf("ReadBuildID = %q, %v; want %q", id, err, b.BuildID)
	}
	// The fixture converts *main.ModelError to error, so its itab exists.
	var addr uint64
	for a, typ := range b.itabs {
		if typ == "*main.ModelError" {
			addr = a
		}
	}
	if typ, ok := b.ItabType(addr); addr == 0 || !ok || typ != "*main.ModelError" {
		t.Errorf("ItabType(%#x) = %q, %v; want *main.ModelError", addr, typ, ok)
	}
	if _, ok := b.ItabType(1); ok {
		t.Error("ItabType(1) found a type")
	}
}

func TestItabConcrete(t *testing.T) {
	for in, want := range map[string]string{
		"*errors.errorString,error":          "*errors.errorString",
		"main.Pair[int,string],fmt.Stringer": "main.Pair[int,string]",
		"noiface":                            "",
	} {
		if got, _ := itabConcrete(in); got != want {
			t.Errorf("itabConcrete(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOpenBinaryErrors(t *testing.T) {
	if _, err := OpenBinary(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	notELF := filepath.Join(t.TempDir(), "text")
	if err := os.WriteFile(notELF, bytes.Repeat([]byte("not an elf "), 20), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBinary(notELF); err == nil || !strings.Contains(err.Error(), "read ELF") {
		t.Errorf("not an ELF: %v", err)
	}
	b := openFixture(t, variantFull)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestNoteDesc(t *testing.T) {
	note := func(namesz, descsz uint32, body string) []byte {
		b := binary.LittleEndian.AppendUint32(nil, namesz)
		b = binary.LittleEndian.AppendUint32(b, descsz)
		b = binary.LittleEndian.AppendUint32(b, 4)
		return append(b, body...)
	}
	two := append(note(4, 3, "GNU\x00abc\x00"), note(3, 5, "Go\x00\x00hello\x00\x00\x00")...)
	if d, ok := noteDesc(two, "Go"); !ok || string(d) != "hello" {
		t.Errorf("noteDesc = %q, %v; want hello", d, ok)
	}
	for _, bad := range [][]byte{note(0xffffffff, 1, "x"), note(4, 0xfffffffd, "GNU\x00"), note(8, 0, "abc"), {1, 2}} {
		if d, ok := noteDesc(bad, "GNU"); ok {
			t.Errorf("malformed note % x gave %q", bad, d)
		}
	}
}
