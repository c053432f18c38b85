package probes

import (
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/routerscope/routerscope/internal/testenv"
)

// arm64Fixture cross-builds the fixture for linux/arm64 once per test run.
func arm64Fixture(t *testing.T) *Binary {
	t.Helper()
	out := fixtureBuild(t, "arm64", testenv.Build{Pkg: "./testdata/fixture", Env: []string{"CGO_ENABLED=0", "GOARCH=arm64", "GOOS=linux"}})
	b, err := OpenBinary(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

var objdumpLine = regexp.MustCompile(`^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$`)

// objdumpInsts disassembles one symbol with llvm-objdump: addresses and
// mnemonics with operands, in order.
func objdumpInsts(t *testing.T, bin, sym string) (addrs []uint64, insts []string) {
	t.Helper()
	out, err := exec.Command("llvm-objdump", "-d", "--no-show-raw-insn", "--disassemble-symbols="+sym, bin).Output()
	if err != nil {
		t.Fatalf("llvm-objdump %s: %v", sym, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		m := objdumpLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		a, err := strconv.ParseUint(m[1], 16, 64)
		if err != nil {
			continue
		}
		addrs = append(addrs, a)
		insts = append(insts, strings.TrimSpace(m[2]+" "+m[3]))
	}
	if len(addrs) == 0 {
		t.Fatalf("llvm-objdump printed no instructions for %s:\n%s", sym, out)
	}
	return addrs, insts
}

// TestArm64Offsets resolves the arm64 fixture's functions and checks every
// RET and the entry placement against llvm-objdump's disassembly.
func TestArm64Offsets(t *testing.T) {
	testenv.RequireTool(t, "llvm-objdump", "llvm")
	b := arm64Fixture(t)
	if b.arch.Name() != "arm64" {
		t.Fatalf("arch %s", b.arch.Name())
	}
	for _, sym := range []string{"main.Greet", "main.Handle", "main.(*Router).Classify", "main.Many", "main.Spill", "main.Fib",
		"main.Leaf", "main.Big", "main.Huge", "main.Twice", "main.Status", "main.Cat.Label", "main.run", "main.main"} {
		fn, err := b.Function(sym)
		if err != nil {
			t.Errorf("%s: %v", sym, err)
			continue
		}
		addrs, insts := objdumpInsts(t, b.Path, sym)
		fileOff := func(a uint64) uint64 { return fn.SymbolOffset + (a - fn.Address) }
		var rets []uint64
		for i, in := range insts {
			if in == "ret" {
				rets = append(rets, fileOff(addrs[i]))
			}
		}
		if len(rets) == 0 || fmt.Sprint(rets) != fmt.Sprint(fn.ReturnOffsets) {
			t.Errorf("%s: RETs %#x, llvm-objdump %#x", sym, fn.ReturnOffsets, rets)
		}
		// The entry is after the first b.ls when the function starts with
		// the stack check's load of g.stackguard0, else its first
		// instruction.
		want := fn.SymbolOffset
		if insts[0] == "ldr x16, [x28, #16]" {
			for i := 1; i < len(insts) && i < arm64StackCheckMax; i++ {
				if strings.HasPrefix(insts[i], "b.ls") {
					want = fileOff(addrs[i+1])
					break
				}
			}
			if want == fn.SymbolOffset {
				t.Errorf("%s: stack check without b.ls in llvm-objdump's view: %q", sym, insts[:min(8, len(insts))])
			}
		}
		if fn.EntryOffset != want {
			t.Errorf("%s: entry %#x, want %#x (%q)", sym, fn.EntryOffset, want, insts[:min(8, len(insts))])
		}
		if strings.HasPrefix(insts[(fn.EntryOffset-fn.SymbolOffset)/4], "st") && fn.EntryEmulated {
			t.Errorf("%s: the entry is a store, which the arm64 kernel single-steps, but is reported emulated", sym)
		}
	}
}

// TestArm64Resolve resolves the fixture spec on the arm64 build: Go's
// register ABI assigns values in the same order on both architectures and
// the struct layouts are the same, so the locations match amd64's, except
// where arm64 has more registers: values amd64 passes on the stack after
// nine integer registers are in R9-R15 on arm64, which the kernel program
// does not read (main.Many's tenth argument, main.Spill's string,
// main.Allowed's struct fields past the ninth word).
func TestArm64Resolve(t *testing.T) {
	arm := arm64Fixture(t)
	amd := openFixture(t, variantFull)
	spec := mustParse(t, fixtureSpec)
	beyondNine := map[string]bool{"main.Many": true, "main.Spill": true, "main.Allowed": true}
	var kept, beyond []Probe
	for _, p := range spec.Probes {
		if beyondNine[p.Symbol] {
			beyond = append(beyond, p)
		} else {
			kept = append(kept, p)
		}
	}
	spec.Probes = kept
	want, err := Resolve(amd, spec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Resolve(arm, spec)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want.Probes {
		g := got.Probes[i]
		if fmt.Sprintf("%+v %+v %+v", g.Entry, g.Return, g.Error) != fmt.Sprintf("%+v %+v %+v", w.Entry, w.Return, w.Error) ||
			fmt.Sprintf("%+v", g.Spec) != fmt.Sprintf("%+v", w.Spec) {
			t.Errorf("%s on arm64:\n got %+v %+v\nwant %+v %+v", w.Spec.Symbol, g.Entry, g.Return, w.Entry, w.Return)
		}
	}
	for _, p := range beyond {
		_, err = Resolve(arm, &Spec{Probes: []Probe{p}})
		if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "in integer register 9 at entry") {
			t.Errorf("%s on arm64: %v, want a value in R9 not supported", p.Symbol, err)
		}
	}
	// main.Many's a8 is in R8, which the kernel reads.
	m := beyond[0]
	m.Attributes = m.Attributes[:1]
	if p, err := Resolve(arm, &Spec{Probes: []Probe{m}}); err != nil || m.Symbol != "main.Many" || p.Probes[0].Entry[0].Loc.Regs[0] != RegR11 {
		t.Errorf("main.Many a8 on arm64: %v", err)
	}
	// The report names arm64 registers.
	rep, err := Verify(arm, spec)
	if err != nil {
		t.Fatal(err)
	}
	if out := rep.String(); !strings.Contains(out, "(arm64") || !strings.Contains(out, "R0,R1") || !strings.Contains(out, "single-stepped") {
		t.Errorf("verify on arm64:\n%s", out)
	}
}
