package probes

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/routerscope/routerscope/internal/testenv"
)

var intRegNames = []string{"RAX", "RBX", "RCX", "RDI", "RSI", "R8", "R9", "R10", "R11"}

// slotString renders a slot as "RAX,RBX" (X0 for float registers) or
// "stack+N" (N past the return address).
func slotString(s abiSlot) string {
	if !s.inRegs {
		return fmt.Sprintf("stack+%d", s.stackOff)
	}
	var regs []string
	for _, p := range s.parts {
		if p.float {
			regs = append(regs, fmt.Sprintf("X%d", p.reg))
		} else {
			regs = append(regs, intRegNames[p.reg])
		}
	}
	return strings.Join(regs, ",")
}

// sigString renders a signature as "recv=...; name=... ; -> name=...".
func sigString(sig *signature) string {
	var parts []string
	if sig.receiver != nil {
		parts = append(parts, "recv "+sig.receiver.name+"="+slotString(sig.recvSlot))
	}
	for i, p := range sig.args {
		parts = append(parts, p.name+"="+slotString(sig.argSlots[i]))
	}
	parts = append(parts, "->")
	for i, p := range sig.results {
		parts = append(parts, p.name+"="+slotString(sig.resultSlots[i]))
	}
	return strings.Join(parts, " ")
}

// TestSignatureABI checks the ABI assignment of the fixture's functions
// against the rules of abi-internal.md applied by hand: integer registers
// RAX RBX RCX RDI RSI R8 R9 R10 R11 in order, strings and interfaces two of
// them, slices three, structs field by field (floats in X registers),
// results restarting at RAX, a value that does not fit going whole to
// the stack.
func TestSignatureABI(t *testing.T) {
	b := openFixture(t, variantFull)
	for fn, want := range map[string]string{
		"main.Greet":  "name=RAX,RBX count=RCX loud=RDI -> ~r0=RAX,RBX",
		"main.Handle": "req=RAX -> ~r0=RAX ~r1=RBX,RCX",
		// Result is {Category{Name string; Score float64; ID int32}; Blocked bool; Reason string}.
		"main.(*Router).Classify": "recv r=RAX req=RBX threshold=RCX -> ~r0=RAX,RBX,X0,RCX,RDI,RSI,R8 ~r1=R9,R10",
		"main.Cat.Label":          "recv c=RAX,RBX,X0,RCX prefix=RDI,RSI -> ~r0=RAX,RBX",
		"main.Many":               "a0=RAX a1=RBX a2=RCX a3=RDI a4=RSI a5=R8 a6=R9 a7=R10 a8=R11 a9=stack+0 a10=stack+8 -> ~r0=RAX",
		// One register left for a two-word string: the string goes whole
		// to the stack and the int8 after it still gets R11.
		"main.Spill": "a0=RAX a1=RBX a2=RCX a3=RDI a4=RSI a5=R8 a6=R9 a7=R10 s=stack+0 b=R11 -> ~r0=RAX",
		// Request has 1 (Model ptr) +1 +1 (len) +1 (MaxTokens) +1 (Stream) +3 (Tags) +1 (Meta) +2+1+1 (Cat) = 12 > 9 words.
		"main.Allowed": "req=stack+0 -> ~r0=RAX",
		"main.Count":   "tags=RAX,RBX,RCX skip=RDI,RSI -> ~r0=RAX",
		"main.Unused":  "a=RAX ~p1=RBX,RCX c=RDI -> ~r0=RAX",
		"main.Twice":   "x=RAX -> ~r0=RAX",
		"main.Scale":   "p=X0,X1 f=X2 -> ~r0=X0,X1",
		"main.Status":  "code=RAX -> status=RAX",
		"main.Fib":     "n=RAX -> ~r0=RAX",
		// Shape instantiations: the hidden dictionary takes RAX (after
		// the receiver for methods).
		"main.First[go.shape.string]":         "xs=RBX,RCX,RDI label=RSI,R8 -> ~r0=RAX,RBX",
		"main.(*Stack[go.shape.string]).Push": "recv s=RAX v=RCX,RDI note=RSI,R8 -> ~r0=RAX",
	} {
		sig, err := b.signature(fn)
		if err != nil {
			t.Errorf("%s: %v", fn, err)
			continue
		}
		if got := sigString(sig); got != want {
			t.Errorf("%s:\n got %s\nwant %s", fn, got, want)
		}
	}
}

// dwarfRegNames maps DWARF x86-64 register numbers (System V psABI) to
// the ABI's names; 17-32 are XMM0-XMM15.
var dwarfRegNames = map[int]string{0: "RAX", 1: "RDX", 2: "RCX", 3: "RBX", 4: "RSI", 5: "RDI", 8: "R8", 9: "R9", 10: "R10", 11: "R11"}

// TestSignatureAgainstCompilerDWARF cross-checks the ABI assignment with
// the compiler's own location lists, as printed by llvm-dwarfdump: at a
// function's first instruction each register-assigned argument is in the
// registers the compiler says (DW_OP_regN, pieced for multi-word values),
// and stack scalars at DW_OP_fbreg +N with the frame base = CFA = SP+8.
func TestSignatureAgainstCompilerDWARF(t *testing.T) {
	dump := testenv.RequireTool(t, "llvm-dwarfdump", "llvm")
	bin := fixtureBinary(t, variantFull)
	b := openFixture(t, variantFull)
	checked := 0
	for _, fn := range []string{"main.Greet", "main.Handle", "main.(*Router).Classify", "main.Cat.Label", "main.Many",
		"main.Spill", "main.Count", "main.Unused", "main.Twice", "main.Fib", "main.Status", "main.Scale",
		"main.First[go.shape.string]", "main.(*Stack[go.shape.string]).Push"} {
		out, err := exec.Command(dump, "--name="+fn, "-c", bin).Output()
		if err != nil {
			t.Fatalf("llvm-dwarfdump %s: %v", fn, err)
		}
		entry, locs := parseDwarfdump(out)
		sig, err := b.signature(fn)
		if err != nil {
			t.Fatal(err)
		}
		var ins []param
		var slots []abiSlot
		if sig.receiver != nil {
			ins, slots = append(ins, *sig.receiver), append(slots, sig.recvSlot)
		}
		ins, slots = append(ins, sig.args...), append(slots, sig.argSlots...)
		for i, p := range ins {
			loc, ok := locs[p.name]
			if !ok || loc.start != entry {
				continue // no location at entry (unused value)
			}
			s := slots[i]
			switch {
			case len(loc.regs) > 0:
				if got := slotString(s); got != strings.Join(loc.regs, ",") {
					t.Errorf("%s %s: ABI %s, compiler %v", fn, p.name, got, loc.regs)
				}
				checked++
			case loc.fbreg >= 0 && p.typ.Size() <= 8:
				if s.inRegs || s.stackOff != loc.fbreg {
					t.Errorf("%s %s: ABI %s, compiler stack+%d", fn, p.name, slotString(s), loc.fbreg)
				}
				checked++
			}
		}
	}
	if checked < 25 {
		t.Errorf("only %d parameters had compiler locations to compare; the dump format may have changed", checked)
	}
}

type dwarfdumpLoc struct {
	start uint64
	regs  []string
	fbreg int64
}

var (
	lowPCRe  = regexp.MustCompile(`DW_AT_low_pc\s+\((0x[0-9a-f]+)\)`)
	nameRe   = regexp.MustCompile(`DW_AT_name\s+\("([^"]+)"\)`)
	originRe = regexp.MustCompile(`DW_AT_abstract_origin\s+\(0x[0-9a-f]+ "([^"]+)"\)`)
	rangeRe  = regexp.MustCompile(`^\s*\[(0x[0-9a-f]+), 0x[0-9a-f]+\): (.*)$`)
	regRe    = regexp.MustCompile(`DW_OP_reg(\d+) `)
	fbregRe  = regexp.MustCompile(`DW_OP_fbreg \+?(-?\d+)`)
	cfaRe    = regexp.MustCompile(`DW_OP_call_frame_cfa\)?$`)
)

// parseDwarfdump extracts, from `llvm-dwarfdump --name=F -c`, the
// function's low_pc and each parameter's first location range.
func parseDwarfdump(out []byte) (uint64, map[string]dwarfdumpLoc) {
	var entry uint64
	locs := map[string]dwarfdumpLoc{}
	var cur string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := lowPCRe.FindStringSubmatch(line); m != nil && entry == 0 {
			entry, _ = strconv.ParseUint(m[1], 0, 64)
		}
		if strings.Contains(line, "DW_TAG_") {
			cur = ""
		}
		if m := nameRe.FindStringSubmatch(line); m != nil {
			cur = m[1]
		}
		if m := originRe.FindStringSubmatch(line); m != nil {
			cur = m[1]
		}
		m := rangeRe.FindStringSubmatch(line)
		if m == nil || cur == "" {
			continue
		}
		if _, seen := locs[cur]; seen {
			continue
		}
		start, _ := strconv.ParseUint(m[1], 0, 64)
		loc := dwarfdumpLoc{start: start, fbreg: -1}
		for _, r := range regRe.FindAllStringSubmatch(m[2], -1) {
			n, _ := strconv.Atoi(r[1])
			name, ok := dwarfRegNames[n]
			if n >= 17 && n <= 32 {
				name, ok = fmt.Sprintf("X%d", n-17), true // XMM0-XMM15
			}
			if !ok {
				name = "dwarf" + r[1]
			}
			loc.regs = append(loc.regs, name)
		}
		if f := fbregRe.FindStringSubmatch(m[2]); f != nil {
			loc.fbreg, _ = strconv.ParseInt(f[1], 10, 64)
		} else if cfaRe.MatchString(m[2]) {
			loc.fbreg = 0
		}
		locs[cur] = loc
	}
	return entry, locs
}

func TestTakesDictionary(t *testing.T) {
	for sym, want := range map[string]bool{
		"main.First[go.shape.string]":                   true,
		"main.(*Stack[go.shape.string]).Push":           true,
		"main.Pair[go.shape.int,go.shape.string].Swap":  true,
		"main.First[go.shape.string].func1":             false,
		"type:.eq.main.Pair[go.shape.int,go.shape.int]": false,
		"main.Greet": false,
	} {
		if got := takesDictionary(sym); got != want {
			t.Errorf("takesDictionary(%q) = %v, want %v", sym, got, want)
		}
	}
}

func TestIsMethodWithPackage(t *testing.T) {
	for _, tc := range []struct {
		sym, pkg string
		want     bool
	}{
		{"gopkg.in/yaml.v3.Unmarshal", "gopkg.in/yaml.v3", false},
		{"gopkg.in/yaml.v3.(*parser).parse", "gopkg.in/yaml.v3", true},
		{"gopkg.in/yaml.v3.Node.Decode", "gopkg.in/yaml.v3", true},
		{"main.Greet", "main", false},
		{"main.Cat.Label", "main", true},
		{"slices.Sort[go.shape.int]", "main", false}, // instantiated in another unit: heuristic
	} {
		if got := isMethod(tc.sym, tc.pkg); got != tc.want {
			t.Errorf("isMethod(%q, %q) = %v, want %v", tc.sym, tc.pkg, got, tc.want)
		}
	}
}

func TestIsMethod(t *testing.T) {
	for sym, want := range map[string]bool{
		"main.Greet":                             false,
		"main.(*Router).Classify":                true,
		"main.Cat.Label":                         true,
		"main.run.func1":                         false,
		"main.(*Router).Classify.func2":          false,
		"main.Cat.Label-fm":                      false,
		"main.main.gowrap1":                      false,
		"github.com/a/b.(*T).M":                  true,
		"github.com/a/b.F[go.shape.int]":         false,
		"github.com/a/b.(*L[go.shape.int]).Push": true,
		"github.com/a.b/c.T.M":                   true,
	} {
		if got := isMethod(sym, ""); got != want {
			t.Errorf("isMethod(%q) = %v, want %v", sym, got, want)
		}
	}
}

// TestSignatureDottedPackagePath resolves functions of gopkg.in/yaml.v3,
// linked into the fixture: the package path's dot must not make Unmarshal
// look like a method.
func TestSignatureDottedPackagePath(t *testing.T) {
	b := openFixture(t, variantFull)
	for fn, want := range map[string]string{
		// func resolve(tag string, in string) (rtag string, out interface{})
		"gopkg.in/yaml.v3.resolve": "tag=RAX,RBX in=RCX,RDI -> rtag=RAX,RBX out=RCX,RDI",
		// func (n *Node) Decode(v interface{}) (err error)
		"gopkg.in/yaml.v3.(*Node).Decode": "recv n=RAX v=RBX,RCX -> err=RAX,RBX",
	} {
		sig, err := b.signature(fn)
		if err != nil {
			t.Fatalf("%s: %v", fn, err)
		}
		if got := sigString(sig); got != want {
			t.Errorf("%s:\n got %s\nwant %s", fn, got, want)
		}
	}
	// The linker writes the path's dot as %2e; both spellings resolve.
	for _, name := range []string{"gopkg.in/yaml.v3.(*Node).Decode", "gopkg.in/yaml%2ev3.(*Node).Decode"} {
		fn, err := b.Function(name)
		if err != nil || fn.Name != "gopkg.in/yaml%2ev3.(*Node).Decode" {
			t.Errorf("Function(%s) = %+v, %v", name, fn, err)
		}
	}
	// Unmarshal is inlined into the fixture's caller.
	if _, err := b.Function("gopkg.in/yaml.v3.Unmarshal"); !errors.Is(err, ErrInlined) {
		t.Errorf("Function(gopkg.in/yaml.v3.Unmarshal) = %v, want ErrInlined", err)
	}
	var found bool
	for addr := range b.itabs {
		if typ, _ := b.ItabType(addr); typ == "*gopkg.in/yaml.v3.TypeError" {
			found = true
		}
	}
	if !found {
		t.Error("no itab for *gopkg.in/yaml.v3.TypeError (unescaped)")
	}
}

func TestUnescapeSymbol(t *testing.T) {
	for in, want := range map[string]string{
		"gopkg.in/yaml%2ev3.(*Node).Decode": "gopkg.in/yaml.v3.(*Node).Decode",
		"main.Greet":                        "main.Greet",
		"a/b%25c.F":                         "a/b%c.F",
		"bad%zz":                            "bad%zz",
		"trailing%2":                        "trailing%2",
	} {
		if got := unescapeSymbol(in); got != want {
			t.Errorf("unescapeSymbol(%q) = %q, want %q", in, got, want)
		}
	}
}
