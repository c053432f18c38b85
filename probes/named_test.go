package probes

import (
	"reflect"
	"testing"

	"github.com/routerscope/routerscope/internal/testenv"
)

// namedSpec reads the traced fixture's named basic types (type WeakString
// string, type Level int, type Flag bool, type Tags []string, type Labels
// []WeakString) as
// arguments, fields behind a pointer and a result.
const namedSpec = `
probes:
  - symbol: main.named
    span: named
    attributes:
      - {name: s, from: "arg:s"}
      - {name: l, from: "arg:l"}
      - {name: f, from: "arg:f"}
      - {name: t, from: "arg:t"}
      - {name: r.name, from: "arg:r.Name"}
      - {name: r.level, from: "arg:r.Level"}
      - {name: r.on, from: "arg:r.On"}
      - {name: r.tags, from: "arg:r.Tags"}
      - {name: typed, from: "arg:s", type: string}
      - {name: r.labels, from: "arg:r.Labels"}
      - {name: result, from: "return:0"}
  - symbol: main.mark
    span: mark
`

// TestResolveNamedBasicTypes: named strings, ints, bools and slices
// resolve to the kinds, sizes and locations of their underlying types.
func TestResolveNamedBasicTypes(t *testing.T) {
	prog := resolveYAML(t, tracedBinary(t), namedSpec)
	p := prog.Probes[0]
	// named(s WeakString, l Level, f Flag, t Tags, r *NamedReq): s in
	// RAX,RBX; l RCX; f DI; t RSI,R8,R9; r R10. NamedReq is {Name string;
	// Level int; On bool; Tags []string}.
	want := []Fetch{
		{0, KindString, 0, regs(RegRAX, RegRBX)},
		{1, KindInt, 8, regs(RegRCX)},
		{2, KindBool, 1, regs(RegRDI)},
		{3, KindStringSlice, 0, regs(RegRSI, RegR8, RegR9)},
		{4, KindString, 0, mem(RegR10, 0)},
		{5, KindInt, 8, mem(RegR10, 16)},
		{6, KindBool, 1, mem(RegR10, 24)},
		{7, KindStringSlice, 0, mem(RegR10, 32)},
		{8, KindString, 0, regs(RegRAX, RegRBX)},
		{9, KindStringSlice, 0, mem(RegR10, 56)},
	}
	if len(p.Entry) != len(want) {
		t.Fatalf("%d entry fetches, want %d: %+v", len(p.Entry), len(want), p.Entry)
	}
	for i, w := range want {
		if g := p.Entry[i]; g.Attr != w.Attr || g.Kind != w.Kind || g.Size != w.Size || !reflect.DeepEqual(g.Loc, w.Loc) {
			t.Errorf("fetch %d = %+v, want %+v", i, g, w)
		}
	}
	if len(p.Return) != 1 || p.Return[0].Kind != KindString || !reflect.DeepEqual(p.Return[0].Loc, regs(RegRAX, RegRBX)) {
		t.Errorf("result fetch %+v, want a string in RAX,RBX", p.Return)
	}
}

// TestCaptureNamedBasicTypes attaches the named-type spec and checks the
// values read from the running fixture.
func TestCaptureNamedBasicTypes(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	proc := startTraced(t, tracedBinary(t))
	prog := resolveYAML(t, tracedBinary(t), namedSpec)
	tr, err := Attach(t.Context(), prog, proc.cmd.Process.Pid, DefaultOptions())
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	defer tr.Close()
	ss := &session{t: t, proc: proc, tr: tr, mark: prog.Probes[1]}
	evs := ss.run("named w")
	expect(t, evs, "entry main.named", "return main.named")
	got := map[string]string{}
	for _, e := range evs {
		for k, v := range attrValues(e) {
			got[k] = formatValue(v)
		}
	}
	want := map[string]string{
		"s": "w", "l": "-7", "f": "true", "t": "t1,t2",
		"r.name": "n-w", "r.level": "42", "r.on": "true", "r.tags": "x",
		"typed": "w", "result": "wt1n-w", "r.labels": "l1,l2",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("attribute %s = %q, want %q", k, got[k], w)
		}
	}
}
