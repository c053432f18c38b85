package probes

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSpecFileReadIsBounded: an endless or huge probe file is refused
// after MaxSpecBytes, not read until memory runs out.
func TestSpecFileReadIsBounded(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err == nil {
		if _, err := LoadSpec("/dev/zero"); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "bytes") {
			t.Errorf("/dev/zero: %v", err)
		}
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, []byte("probes:\n"+strings.Repeat("# padding\n", MaxSpecBytes/10+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSpec(big); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("file past %d bytes: %v", MaxSpecBytes, err)
	}
}

func manyProbes(n int, symbol func(i int) string) string {
	var b strings.Builder
	b.WriteString("probes:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - {symbol: %s, span: s%d}\n", symbol(i), i)
	}
	return b.String()
}

// TestTooManyProbesRefused: a spec past MaxProbes could never attach; it
// is refused by validation with one short message.
func TestTooManyProbesRefused(t *testing.T) {
	_, err := ParseSpec([]byte(manyProbes(5000, func(i int) string { return fmt.Sprintf("main.Missing%d", i) })), "many.yaml")
	if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "at most 256") {
		t.Fatalf("5000 probes: %v", err)
	}
	if len(err.Error()) > 4096 {
		t.Errorf("error is %d bytes", len(err.Error()))
	}
}

// TestResolveErrorsAreBounded: a spec of missing symbols stops resolving
// after maxReportedErrors problems, so the suggestions' cost and the
// message's size do not grow with the spec.
func TestResolveErrorsAreBounded(t *testing.T) {
	b := openFixture(t, variantFull)
	spec := mustParse(t, manyProbes(MaxProbes, func(i int) string { return fmt.Sprintf("main.Missing%d", i) }))
	start := time.Now()
	_, err := Resolve(b, spec)
	took := time.Since(start)
	if !errors.Is(err, ErrSymbolNotFound) {
		t.Fatalf("error %v", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) > maxReportedErrors+1 || !strings.Contains(lines[len(lines)-1], "not resolved after") {
		t.Errorf("%d lines, last %q", len(lines), lines[len(lines)-1])
	}
	t.Logf("%d missing symbols: %d-line error (%d bytes) in %v", MaxProbes, len(lines), len(err.Error()), took)
}

// TestValidationErrorsAreBounded: hundreds of invalid probes give a
// message of bounded size that still names the first ones.
func TestValidationErrorsAreBounded(t *testing.T) {
	_, err := ParseSpec([]byte(manyProbes(200, func(int) string { return `""` })), "bad.yaml")
	if !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("error %v", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxReportedErrors+1 || !strings.Contains(lines[len(lines)-1], "more problems not shown") {
		t.Errorf("%d lines, last %q", len(lines), lines[len(lines)-1])
	}
}

// TestParentCycleRefused: two probes that name each other as parent were
// accepted; their spans could never nest.
func TestParentCycleRefused(t *testing.T) {
	_, err := ParseSpec([]byte("probes:\n  - {symbol: main.a, span: a, parent: b}\n  - {symbol: main.b, span: b, parent: a}\n  - {symbol: main.c, span: c, parent: a}\n"), "cycle.yaml")
	if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "parents form a cycle: a -> b -> a") {
		t.Fatalf("got %v", err)
	}
	if n := strings.Count(err.Error(), "form a cycle"); n != 1 {
		t.Errorf("cycle reported %d times: %v", n, err)
	}
	if _, err := ParseSpec([]byte("probes:\n  - {symbol: main.a, span: a}\n  - {symbol: main.b, span: b, parent: a}\n  - {symbol: main.c, span: c, parent: b}\n"), "chain.yaml"); err != nil {
		t.Errorf("a chain is not a cycle: %v", err)
	}
}

// TestNoDWARFSaidOnce: a binary without DWARF fails every argument
// source the same way; the reason is given once, with a count, and a
// stripped binary is called stripped rather than blamed on -w.
func TestNoDWARFSaidOnce(t *testing.T) {
	spec := mustParse(t, `
probes:
  - symbol: main.Fib
    span: fib
    attributes:
      - {name: a, from: arg:n}
      - {name: b, from: arg:n}
      - {name: c, from: arg:n}
`)
	for _, v := range []fixtureVariant{variantNoDWARF, variantStripped} {
		_, err := Resolve(openFixture(t, v), spec)
		if !errors.Is(err, ErrNoDWARF) {
			t.Fatalf("%s: %v", v, err)
		}
		if n := strings.Count(err.Error(), ErrNoDWARF.Error()); n != 1 {
			t.Errorf("%s: the reason is given %d times: %v", v, n, err)
		}
		if !strings.Contains(err.Error(), "2 more sources need DWARF") {
			t.Errorf("%s: no count of the others: %v", v, err)
		}
		if v == variantStripped && !strings.Contains(err.Error(), "stripped") {
			t.Errorf("stripped binary: %v", err)
		}
	}
}

// TestNotAGoBinary: a C binary gets one "not a Go binary", not "symbol
// not found" for every probe: a stripped one when opened, one with a
// symbol table when resolved.
func TestNotAGoBinary(t *testing.T) {
	bins := []string{"/bin/true"}
	if cc, err := exec.LookPath("cc"); err == nil {
		src := filepath.Join(t.TempDir(), "c.c")
		out := filepath.Join(filepath.Dir(src), "c")
		if err := os.WriteFile(src, []byte("int main(void) { return 0; }\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if msg, err := exec.Command(cc, "-o", out, src).CombinedOutput(); err == nil {
			bins = append(bins, out)
		} else {
			t.Logf("cc: %v %s", err, msg)
		}
	}
	spec := mustParse(t, "probes:\n  - {symbol: main.a, span: a}\n  - {symbol: main.b, span: b}\n")
	for _, bin := range bins {
		if _, err := os.Stat(bin); err != nil {
			continue
		}
		b, err := OpenBinary(bin)
		if err == nil {
			_, err = Resolve(b, spec)
			b.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "not a Go binary") || strings.Contains(err.Error(), "main.b") {
			t.Errorf("%s: got %v", bin, err)
		}
	}
}

// TestUnreadableTypesNamed: a map argument is called a map (it was "a
// pointer; select a field") and an interface other than error is refused
// (it was read as an error and printed "(error)").
func TestUnreadableTypesNamed(t *testing.T) {
	b := openFixture(t, variantFull)
	spec := mustParse(t, "probes:\n  - symbol: main.Headers\n    span: h\n    attributes:\n      - {name: h, from: arg:h}\n      - {name: w, from: arg:w}\n")
	_, err := Resolve(b, spec)
	if !errors.Is(err, ErrNotSupported) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{"map[string][]string is a map or channel", "fmt.Stringer is an interface other than error"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("no %q in: %v", want, err)
		}
	}
}

// TestFloatResultSaysAtReturn: a float result is read at return; the
// message said "at entry".
func TestFloatResultSaysAtReturn(t *testing.T) {
	b := openFixture(t, variantFull)
	_, err := Resolve(b, mustParse(t, "probes:\n  - symbol: main.Scale\n    span: s\n    attributes:\n      - {name: x, from: return:0.X}\n"))
	if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "at return") || strings.Contains(err.Error(), "at entry") {
		t.Fatalf("got %v", err)
	}
}
