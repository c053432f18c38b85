package probes

import (
	"encoding/json"
	"strings"
	"testing"
)

const verifySpec = `
probes:
  - symbol: main.Handle
    span: handle
    attributes:
      - {name: model, from: arg:req.Model}
      - {name: user, from: arg:req.Meta.User}
      - {name: reason, from: return:0.Reason}
      - {name: took, from: duration_ms}
      - {name: c, value: x}
    error: {from: return:1}
  - symbol: main.Scale
    span: scale
    attributes:
      - {name: f, from: arg:f}
      - {name: missing, from: arg:nope}
  - symbol: main.Gret
    span: greet
  - symbol: main.add
    span: add
`

func TestVerify(t *testing.T) {
	b := openFixture(t, variantFull)
	spec, err := ParseSpec([]byte(verifySpec), "verify.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(b, spec)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.Problems() == nil || len(rep.Probes) != 4 || rep.Arch != "amd64" || rep.BuildID != b.BuildID {
		t.Fatalf("report:\n%s", rep)
	}
	h := rep.Probes[0]
	fn, err := b.Function("main.Handle")
	if err != nil {
		t.Fatal(err)
	}
	if !h.Resolved || len(h.Problems) != 0 || h.EntryOffset != fn.EntryOffset || len(h.ReturnOffsets) != len(fn.ReturnOffsets) ||
		h.EntryCost != CostEmulated || h.EntryInstruction != "PUSHQ BP" {
		t.Errorf("main.Handle: %+v, want resolved at %#x on an emulated PUSHQ BP", h, fn.EntryOffset)
	}
	want := map[string]ValueReport{
		"model":  {Attribute: "model", From: "arg:req.Model", At: "entry", GoType: "string", Type: "string", Location: "memory at AX"},
		"user":   {Attribute: "user", From: "arg:req.Meta.User", At: "entry", GoType: "string", Type: "string", Location: "memory at *(AX+0x38)"},
		"reason": {Attribute: "reason", From: "return:0.Reason", At: "return", GoType: "string", Type: "string", Location: "memory at AX+0x28"},
		"took":   {Attribute: "took", From: "duration_ms", At: "return", Type: "int", Location: "computed in user space"},
		"error":  {Attribute: "error", From: "return:1", At: "return", GoType: "error", Location: "BX,CX"},
	}
	if len(h.Values) != len(want) {
		t.Errorf("main.Handle values: %+v", h.Values)
	}
	for _, v := range h.Values {
		if w := want[v.Attribute]; v != w {
			t.Errorf("value %s:\n got %+v\nwant %+v", v.Attribute, v, w)
		}
	}
	s := rep.Probes[1]
	if !s.Resolved || len(s.Problems) != 2 || !strings.Contains(s.Problems[0], "float register") || !strings.Contains(s.Problems[1], "no parameter named nope") {
		t.Errorf("main.Scale: want both attribute problems, got %q", s.Problems)
	}
	if g := rep.Probes[2]; g.Resolved || len(g.Problems) != 1 || !strings.Contains(g.Problems[0], "did you mean main.Greet") {
		t.Errorf("main.Gret: %+v", g)
	}
	if a := rep.Probes[3]; a.Resolved || len(a.Problems) != 1 || !strings.Contains(a.Problems[0], "noinline") {
		t.Errorf("main.add: %+v", a)
	}
	out := rep.String()
	for _, s := range []string{"entry   0x", "PUSHQ BP (emulated)", "PROBLEM", "4 problems"} {
		if !strings.Contains(out, s) {
			t.Errorf("text report lacks %q:\n%s", s, out)
		}
	}
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil || back.Probes[0].EntryOffset != fn.EntryOffset {
		t.Errorf("JSON round trip: %v %s", err, data)
	}
}

// TestVerifyKernelLimit: a probe that resolves but reads more values than
// the kernel program holds is a problem before anything is attached.
func TestVerifyKernelLimit(t *testing.T) {
	b := openFixture(t, variantFull)
	var sb strings.Builder
	sb.WriteString("probes:\n  - symbol: main.Greet\n    span: g\n    attributes:\n")
	for i := range MaxFetches + 1 {
		sb.WriteString("      - {name: n" + string(rune('a'+i)) + ", from: arg:name}\n")
	}
	spec, err := ParseSpec([]byte(sb.String()), "limit.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(b, spec)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || len(rep.Probes[0].Problems) != 1 || !strings.Contains(rep.Probes[0].Problems[0], "at most") {
		t.Errorf("want one kernel-limit problem, got:\n%s", rep)
	}
}

// TestVerifyEndAt: verify shows where an end_at uprobe goes and what it
// costs, that the RETs are not probed, and an end_at that is not in the
// binary as a problem.
func TestVerifyEndAt(t *testing.T) {
	b := openFixture(t, variantFull)
	spec, err := ParseSpec([]byte(`
probes:
  - {symbol: main.Greet, span: greet, end_at: main.Handle}
  - {symbol: main.Scale, span: scale, end_at: main.Nope}
`), "verify.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(b, spec)
	if err != nil {
		t.Fatal(err)
	}
	fn, err := b.Function("main.Handle")
	if err != nil {
		t.Fatal(err)
	}
	g := rep.Probes[0]
	if !g.Resolved || len(g.Problems) != 0 || !g.EndNext || g.EndAt == nil ||
		*g.EndAt != (EndAtReport{Symbol: "main.Handle", Offset: fn.EntryOffset, Instruction: "PUSHQ BP", Cost: CostEmulated}) {
		t.Errorf("main.Greet: %+v (end at %+v)", g, g.EndAt)
	}
	if s := rep.Probes[1]; len(s.Problems) != 1 || !strings.Contains(s.Problems[0], "end_at: ") {
		t.Errorf("main.Scale: problems %q", s.Problems)
	}
	out := rep.String()
	for _, s := range []string{"not probed (end: next)", "end at  0x", "main.Handle: PUSHQ BP (emulated)"} {
		if !strings.Contains(out, s) {
			t.Errorf("text report lacks %q:\n%s", s, out)
		}
	}
}
