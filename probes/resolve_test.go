package probes

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/routerscope/routerscope/probes/testdata/fixture/shapes"
)

// fixtureSpec probes the fixture with every kind of source. Offsets in the
// expectations below come from unsafe.Offsetof on the same shapes types
// the fixture was compiled with.
const fixtureSpec = `
probes:
  - symbol: main.Handle
    span: handle
    kind: server
    attributes:
      - {name: model, from: arg:req.Model}
      - {name: max_tokens, from: arg:0.MaxTokens}
      - {name: stream, from: arg:req.Stream}
      - {name: tags, from: arg:req.Tags}
      - {name: user, from: arg:req.Meta.User}
      - {name: priority, from: arg:req.Meta.Priority}
      - {name: temperature, from: arg:req.Meta.Temperature}
      - {name: retries, from: arg:req.Meta.Retries}
      - {name: category, from: arg:req.Cat.Name}
      - {name: score, from: arg:req.Cat.Score, type: float}
      - {name: deep, from: arg:req.Meta.Next.Next.Retries}
      - {name: result.reason, from: return:0.Reason}
      - {name: result.category, from: return:0.Category.Name}
      - {name: took_ms, from: duration_ms}
      - {name: component, value: router}
      - {name: limit, from: arg:req.Limit}
    error: {from: return:1}
  - symbol: main.(*Router).Classify
    span: classify
    parent: handle
    attributes:
      - {name: router, from: receiver.Name}
      - {name: calls, from: receiver.Calls}
      - {name: threshold, from: receiver.Cfg.Threshold}
      - {name: models, from: receiver.Cfg.Models}
      - {name: limit, from: arg:threshold}
      - {name: blocked, from: return:0.Blocked, map: {"true": blocked, "false": allowed}}
      - {name: reason, from: return:0.Reason}
      - {name: category.id, from: return:0.Category.ID}
    error: {from: return:0.Blocked}
  - symbol: main.Greet
    span: greet
    attributes:
      - {name: name, from: arg:name}
      - {name: count, from: arg:1}
      - {name: loud, from: arg:2, type: bool}
      - {name: greeting, from: return:0}
  - symbol: main.Many
    span: many
    attributes:
      - {name: a8, from: arg:a8}
      - {name: a9, from: arg:9}
      - {name: a10, from: arg:a10}
  - symbol: main.Spill
    span: spill
    attributes:
      - {name: s, from: arg:s}
      - {name: b, from: arg:b}
  - symbol: main.Allowed
    span: allowed
    attributes:
      - {name: model, from: arg:req.Model}
      - {name: user, from: arg:req.Meta.User}
      - {name: category, from: arg:req.Cat.Name}
  - symbol: main.Cat.Label
    span: label
    attributes:
      - {name: name, from: receiver.Name}
      - {name: id, from: receiver.ID}
  - symbol: main.Status
    span: status
    error: {from: return:0, at_least: 500}
  - symbol: main.Fib
    span: fib
    attributes:
      - {name: n, from: arg:n}
  - symbol: main.Big
    span: big
  - symbol: main.Twice
    span: twice
    attributes:
      - {name: x, from: arg:x}
      - {name: doubled, from: "return:0"}
`

func regs(rs ...Reg) Location {
	l := Location{InRegs: true, NRegs: uint8(len(rs))}
	copy(l.Regs[:], rs)
	return l
}

func mem(base Reg, offs ...uintptr) Location {
	l := Location{Base: base}
	for _, o := range offs {
		l.Offsets = append(l.Offsets, int64(o))
	}
	return l
}

func TestResolveFixture(t *testing.T) {
	spec, err := ParseSpec([]byte(fixtureSpec), "fixture.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b := openFixture(t, variantFull)
	prog, err := Resolve(b, spec)
	if err != nil {
		t.Fatal(err)
	}
	if prog.Binary != b.Path || prog.BuildID != b.BuildID || len(prog.Probes) != len(spec.Probes) {
		t.Fatalf("program %s %s with %d probes", prog.Binary, prog.BuildID, len(prog.Probes))
	}
	var (
		req  shapes.Request
		meta shapes.Meta
		cat  shapes.Category
		res  shapes.Result
		rt   shapes.Router
		cfg  shapes.Config
	)
	type want struct {
		entry, ret []Fetch
		errFetch   *Fetch
		parent     int
	}
	wants := map[string]want{
		"main.Handle": {
			entry: []Fetch{
				{0, KindString, 0, mem(RegRAX, unsafe.Offsetof(req.Model))},
				{1, KindInt, 8, mem(RegRAX, unsafe.Offsetof(req.MaxTokens))},
				{2, KindBool, 1, mem(RegRAX, unsafe.Offsetof(req.Stream))},
				{3, KindStringSlice, 0, mem(RegRAX, unsafe.Offsetof(req.Tags))},
				{4, KindString, 0, mem(RegRAX, unsafe.Offsetof(req.Meta), unsafe.Offsetof(meta.User))},
				{5, KindUint, 2, mem(RegRAX, unsafe.Offsetof(req.Meta), unsafe.Offsetof(meta.Priority))},
				{6, KindFloat, 4, mem(RegRAX, unsafe.Offsetof(req.Meta), unsafe.Offsetof(meta.Temperature))},
				{7, KindInt, 1, mem(RegRAX, unsafe.Offsetof(req.Meta), unsafe.Offsetof(meta.Retries))},
				{8, KindString, 0, mem(RegRAX, unsafe.Offsetof(req.Cat)+unsafe.Offsetof(cat.Name))},
				{9, KindFloat, 8, mem(RegRAX, unsafe.Offsetof(req.Cat)+unsafe.Offsetof(cat.Score))},
				// Four offsets: the most the kernel follows.
				{10, KindInt, 1, mem(RegRAX, unsafe.Offsetof(req.Meta), unsafe.Offsetof(meta.Next), unsafe.Offsetof(meta.Next), unsafe.Offsetof(meta.Retries))},
				// A final *int is dereferenced.
				{15, KindInt, 8, mem(RegRAX, unsafe.Offsetof(req.Limit), 0)},
			},
			ret: []Fetch{
				{11, KindString, 0, mem(RegRAX, unsafe.Offsetof(res.Reason))},
				{12, KindString, 0, mem(RegRAX, unsafe.Offsetof(res.Category)+unsafe.Offsetof(cat.Name))},
			},
			errFetch: &Fetch{-1, KindError, 0, regs(RegRBX, RegRCX)},
			parent:   -1,
		},
		"main.(*Router).Classify": {
			// main.Router embeds shapes.Router at offset 0: its fields are
			// promoted.
			entry: []Fetch{
				{0, KindString, 0, mem(RegRAX, unsafe.Offsetof(rt.Name))},
				{1, KindInt, 8, mem(RegRAX, unsafe.Offsetof(rt.Calls))},
				{2, KindFloat, 8, mem(RegRAX, unsafe.Offsetof(rt.Cfg), unsafe.Offsetof(cfg.Threshold))},
				{3, KindStringSlice, 0, mem(RegRAX, unsafe.Offsetof(rt.Cfg), unsafe.Offsetof(cfg.Models))},
				{4, KindInt, 8, regs(RegRCX)},
			},
			// The Result comes back by value: RAX,RBX Name; X0 Score;
			// RCX ID; RDI Blocked; RSI,R8 Reason; then the error in R9,R10.
			ret: []Fetch{
				{5, KindBool, 1, regs(RegRDI)},
				{6, KindString, 0, regs(RegRSI, RegR8)},
				{7, KindInt, 4, regs(RegRCX)},
			},
			errFetch: &Fetch{-1, KindBool, 1, regs(RegRDI)},
			parent:   0,
		},
		"main.Greet": {
			entry: []Fetch{
				{0, KindString, 0, regs(RegRAX, RegRBX)},
				{1, KindInt, 8, regs(RegRCX)},
				{2, KindBool, 1, regs(RegRDI)},
			},
			ret:    []Fetch{{3, KindString, 0, regs(RegRAX, RegRBX)}},
			parent: -1,
		},
		"main.Many": {
			// Stack arguments start past the return address at SP.
			entry: []Fetch{
				{0, KindInt, 8, regs(RegR11)},
				{1, KindInt, 8, mem(RegSP, 8)},
				{2, KindInt, 8, mem(RegSP, 16)},
			},
			parent: -1,
		},
		"main.Spill": {
			entry: []Fetch{
				{0, KindString, 0, mem(RegSP, 8)},
				{1, KindInt, 1, regs(RegR11)},
			},
			parent: -1,
		},
		"main.Allowed": {
			// The whole Request is on the stack: fields are offsets from SP+8.
			entry: []Fetch{
				{0, KindString, 0, mem(RegSP, 8+unsafe.Offsetof(req.Model))},
				{1, KindString, 0, mem(RegSP, 8+unsafe.Offsetof(req.Meta), unsafe.Offsetof(meta.User))},
				{2, KindString, 0, mem(RegSP, 8+unsafe.Offsetof(req.Cat)+unsafe.Offsetof(cat.Name))},
			},
			parent: -1,
		},
		"main.Cat.Label": {
			// A by-value struct receiver decomposes into its fields' registers.
			entry: []Fetch{
				{0, KindString, 0, regs(RegRAX, RegRBX)},
				{1, KindInt, 4, regs(RegRCX)},
			},
			parent: -1,
		},
		"main.Status": {errFetch: &Fetch{-1, KindInt, 8, regs(RegRAX)}, parent: -1},
		"main.Fib":    {entry: []Fetch{{0, KindInt, 8, regs(RegRAX)}}, parent: -1},
		"main.Big":    {parent: -1},
		"main.Twice": {
			entry:  []Fetch{{0, KindInt, 8, regs(RegRAX)}},
			ret:    []Fetch{{1, KindInt, 8, regs(RegRAX)}},
			parent: -1,
		},
	}
	for i, r := range prog.Probes {
		w, ok := wants[r.Spec.Symbol]
		if !ok {
			t.Errorf("unexpected probe %s", r.Spec.Symbol)
			continue
		}
		if r.ID != i || r.ParentID != w.parent {
			t.Errorf("%s: ID %d parent %d, want %d %d", r.Spec.Symbol, r.ID, r.ParentID, i, w.parent)
		}
		fn, err := b.Function(r.Spec.Symbol)
		if err != nil {
			t.Fatal(err)
		}
		if r.Address != fn.Address || r.SymbolOffset != fn.SymbolOffset || r.EntryOffset != fn.EntryOffset ||
			!reflect.DeepEqual(r.ReturnOffsets, fn.ReturnOffsets) {
			t.Errorf("%s: offsets %#x %#x %#x, want %+v", r.Spec.Symbol, r.SymbolOffset, r.EntryOffset, r.ReturnOffsets, fn)
		}
		if !fetchesEqual(r.Entry, w.entry) {
			t.Errorf("%s entry:\n got %+v\nwant %+v", r.Spec.Symbol, r.Entry, w.entry)
		}
		if !fetchesEqual(r.Return, w.ret) {
			t.Errorf("%s return:\n got %+v\nwant %+v", r.Spec.Symbol, r.Return, w.ret)
		}
		if (r.Error == nil) != (w.errFetch == nil) || (r.Error != nil && !reflect.DeepEqual(*r.Error, *w.errFetch)) {
			t.Errorf("%s error fetch: got %+v, want %+v", r.Spec.Symbol, r.Error, w.errFetch)
		}
	}
	// Derived types are filled in the resolved copy, not the caller's spec.
	h := prog.Probes[0].Spec.Attributes
	wantTypes := []string{"string", "int", "bool", "string_list", "string", "int", "float", "int", "string", "float", "int", "string", "string", "int", "string", "int"}
	for i, a := range h {
		if a.Type != wantTypes[i] {
			t.Errorf("handle attribute %s: type %q, want %q", a.Name, a.Type, wantTypes[i])
		}
	}
	if spec.Probes[0].Attributes[0].Type != "" {
		t.Error("Resolve modified the caller's spec")
	}
	if got := prog.Probes[1].Spec.Attributes[5].Type; got != TypeString {
		t.Errorf("mapped attribute type %q, want string", got)
	}
}

func fetchesEqual(a, b []Fetch) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

// TestResolveWithoutDWARF: span probes with only durations and constants
// work on a binary built with -w; reading an argument is ErrNoDWARF.
func TestResolveWithoutDWARF(t *testing.T) {
	for _, v := range []fixtureVariant{variantNoDWARF, variantStripped} {
		b := openFixture(t, v)
		spec := mustParse(t, `
probes:
  - symbol: main.Fib
    span: fib
    attributes:
      - {name: took_us, from: duration_us}
      - {name: lang, value: go}
`)
		prog, err := Resolve(b, spec)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		if r := prog.Probes[0]; len(r.Entry)+len(r.Return) != 0 || r.Error != nil || len(r.ReturnOffsets) != 2 {
			t.Errorf("%s: %+v", v, r)
		}
		spec.Probes[0].Attributes = append(spec.Probes[0].Attributes, Attribute{Name: "n", From: "arg:n"})
		_, err = Resolve(b, spec)
		if !errors.Is(err, ErrNoDWARF) || !strings.Contains(err.Error(), "attributes[2] (n)") || !strings.Contains(err.Error(), "-w") {
			t.Errorf("%s: argument without DWARF: %v", v, err)
		}
	}
}

func mustParse(t *testing.T, yaml string) *Spec {
	t.Helper()
	spec, err := ParseSpec([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// TestResolveErrors checks each resolution error: its sentinel, and that
// the message names the probe, the key and the fix.
func TestResolveErrors(t *testing.T) {
	b := openFixture(t, variantFull)
	for _, tc := range []struct {
		name, probe string
		is          error
		want        []string
	}{
		{"missing symbol", `{symbol: main.Gret, span: s}`, ErrSymbolNotFound,
			[]string{"probes[0] (main.Gret): symbol", "did you mean main.Greet"}},
		{"inlined", `{symbol: main.add, span: s}`, ErrInlined, []string{"probes[0] (main.add)", "//go:noinline"}},
		{"float argument", `{symbol: main.Scale, span: s, attributes: [{name: f, from: arg:f}]}`, ErrNotSupported,
			[]string{"attributes[0] (f).from arg:f", "float register X2", "through a pointer"}},
		{"float field of a by-value struct", `{symbol: main.Scale, span: s, attributes: [{name: x, from: arg:p.X}]}`, ErrNotSupported,
			[]string{"float register X0"}},
		{"float result field", `{symbol: main.(*Router).Classify, span: s, attributes: [{name: x, from: return:0.Category.Score}]}`, ErrNotSupported,
			[]string{"float register X0"}},
		{"no such field", `{symbol: main.Handle, span: s, attributes: [{name: x, from: arg:req.Modle}]}`, ErrInvalidSpec,
			[]string{"has no field Modle", "Model, MaxTokens"}},
		{"no such parameter", `{symbol: main.Handle, span: s, attributes: [{name: x, from: arg:request}]}`, ErrInvalidSpec,
			[]string{"no parameter named request", "0: req *"}},
		{"argument index", `{symbol: main.Greet, span: s, attributes: [{name: x, from: arg:3}]}`, ErrInvalidSpec,
			[]string{"argument index 3 out of range", "3 arguments", "without the receiver"}},
		{"result index", `{symbol: main.Greet, span: s, attributes: [{name: x, from: return:1}]}`, ErrInvalidSpec,
			[]string{"result index 1 out of range", "1 results"}},
		{"receiver of a function", `{symbol: main.Greet, span: s, attributes: [{name: x, from: receiver}]}`, ErrInvalidSpec,
			[]string{"not a method"}},
		{"type mismatch", `{symbol: main.Greet, span: s, attributes: [{name: x, from: arg:name, type: int}]}`, ErrInvalidSpec,
			[]string{"attributes[0] (x).type", "Go string", "cannot be type int", "use type string"}},
		{"int as string", `{symbol: main.Greet, span: s, attributes: [{name: x, from: arg:count, type: string}]}`, ErrInvalidSpec,
			[]string{"Go signed integer", "use type int"}},
		{"whole struct", `{symbol: main.Handle, span: s, attributes: [{name: x, from: arg:req.Cat}]}`, ErrInvalidSpec,
			[]string{"is a struct; select one of its fields (Name, Score, ID)"}},
		{"pointer to struct", `{symbol: main.Handle, span: s, attributes: [{name: x, from: arg:req.Meta}]}`, ErrInvalidSpec,
			[]string{"is a pointer; select a field"}},
		{"field of a string", `{symbol: main.Greet, span: s, attributes: [{name: x, from: arg:name.Len}]}`, ErrInvalidSpec,
			[]string{"cannot select .Len", "string"}},
		{"pointer field", `{symbol: main.(*Router).Classify, span: s, attributes: [{name: x, from: receiver.Cfg}]}`, ErrInvalidSpec,
			[]string{"is a pointer"}},
		{"unsupported slice", `{symbol: main.(*Router).Classify, span: s, attributes: [{name: x, from: receiver.Cfg.Weights}]}`, ErrNotSupported,
			[]string{"[]float64 is a slice other than []string"}},
		{"empty interface", `{symbol: main.(*Router).Classify, span: s, attributes: [{name: x, from: receiver.Cfg.Extra}]}`, ErrNotSupported,
			[]string{"empty interface"}},
		{"field of a string field", `{symbol: main.Handle, span: s, attributes: [{name: x, from: arg:req.Meta.User.Foo}]}`, ErrInvalidSpec,
			[]string{"cannot select .Foo"}},
		{"too many pointer hops from the stack", `{symbol: main.Allowed, span: s, attributes: [{name: x, from: arg:req.Meta.Next.Next.Next.User}]}`, ErrNotSupported,
			[]string{"follows too many pointers"}},
		{"too many pointer hops", `{symbol: main.Handle, span: s, attributes: [{name: x, from: arg:req.Meta.Next.Next.Next.User}]}`, ErrNotSupported,
			[]string{"follows too many pointers", "at most 4"}},
		{"error as attribute", `{symbol: main.Handle, span: s, attributes: [{name: e, from: return:1}]}`, ErrInvalidSpec,
			[]string{"attributes[0] (e).type", "report errors with the probe's `error: {from: ...}` rule"}},
		{"error rule on a string", `{symbol: main.Greet, span: s, error: {from: return:0}}`, ErrInvalidSpec,
			[]string{"error.from return:0", "needs an error, a bool or an integer"}},
		{"error rule int without threshold", `{symbol: main.Status, span: s, error: {from: return:0}}`, ErrInvalidSpec,
			[]string{"set equals", "at_least"}},
		{"error rule with equals on error", `{symbol: main.Handle, span: s, error: {from: return:1, equals: 1}}`, ErrInvalidSpec,
			[]string{"fails when non-nil"}},
		{"error rule bool with int", `{symbol: main.(*Router).Classify, span: s, error: {from: return:0.Blocked, equals: 3}}`, ErrInvalidSpec,
			[]string{"equals must be true or false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := mustParse(t, "probes:\n  - "+tc.probe+"\n")
			_, err := Resolve(b, spec)
			if !errors.Is(err, tc.is) {
				t.Fatalf("error %v, want %v", err, tc.is)
			}
			for _, w := range append([]string{"test.yaml"}, tc.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestResolveCollectsErrors: every broken probe and attribute is reported
// in one error.
func TestResolveCollectsErrors(t *testing.T) {
	b := openFixture(t, variantFull)
	spec := mustParse(t, `
probes:
  - symbol: main.Nope
    span: a
  - symbol: main.Greet
    span: b
    attributes:
      - {name: x, from: arg:9}
      - {name: y, from: arg:name.Foo}
      - {name: ok, from: arg:name}
`)
	_, err := Resolve(b, spec)
	for _, w := range []string{"probes[0] (main.Nope)", "attributes[0] (x)", "attributes[1] (y)"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v lacks %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "attributes[2]") {
		t.Errorf("valid attribute reported: %v", err)
	}
	// One line per problem, each naming the file and the probe.
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 {
		t.Errorf("%d lines, want 3: %v", len(lines), err)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "test.yaml: probes[") {
			t.Errorf("line %q does not start with the file and probe", l)
		}
	}
}
