package probes

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"unsafe"

	"github.com/routerscope/routerscope/probes/testdata/fixture/shapes"
)

func TestListFunctions(t *testing.T) {
	b := openFixture(t, variantFull)
	fns, err := b.ListFunctions(regexp.MustCompile(`^main\.`))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]FuncInfo{}
	for _, f := range fns {
		byName[f.Name] = f
	}
	for name, want := range map[string]string{
		"main.(*Router).Classify": "main.(*Router).Classify(r *main.Router, req *github.com/routerscope/routerscope/probes/testdata/fixture/shapes.Request, threshold int) (github.com/routerscope/routerscope/probes/testdata/fixture/shapes.Result, error)",
		"main.Greet":              "main.Greet(name string, count int, loud bool) string",
		"main.Unused":             "main.Unused(a int, ~p1 string, c bool) bool",
	} {
		f, ok := byName[name]
		if !ok {
			t.Errorf("%s not listed", name)
			continue
		}
		if got := f.String(); got != want {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
		if !f.Probeable || f.Note != "" {
			t.Errorf("%s: probeable %v note %q, want probeable without note", name, f.Probeable, f.Note)
		}
	}
	add, ok := byName["main.add"]
	if !ok {
		t.Fatal("main.add (inlined everywhere) not listed")
	}
	if add.Probeable || !strings.Contains(add.Note, "inlined") || !strings.HasPrefix(add.String(), "main.add(a int, b int)") {
		t.Errorf("main.add: %+v (%s), want not probeable, inlined, with its signature", add, add)
	}
	if tw := byName["main.Twice"]; !tw.Probeable {
		t.Errorf("main.Twice has an out-of-line body and must be probeable: %+v", tw)
	}
	for _, f := range fns {
		if !strings.HasPrefix(f.Name, "main.") {
			t.Errorf("%s listed for ^main\\.", f.Name)
		}
	}
}

func TestListFunctionsAssemblyAndStripped(t *testing.T) {
	b := openFixture(t, variantFull)
	fns, err := b.ListFunctions(regexp.MustCompile(`\.abi0$`))
	if err != nil {
		t.Fatal(err)
	}
	if len(fns) == 0 {
		t.Fatal("no ABI0 assembly function listed")
	}
	for _, f := range fns {
		if f.Probeable || f.Note != noteAsm {
			t.Errorf("%s: %+v, want not probeable as assembly", f.Name, f)
		}
	}
	s := openFixture(t, variantStripped)
	fns, err = s.ListFunctions(regexp.MustCompile(`^main\.Greet$`))
	if err != nil {
		t.Fatal(err)
	}
	if len(fns) != 1 || fns[0].Signature || fns[0].Note != noteBinNoDbg || fns[0].String() != "main.Greet" {
		t.Errorf("stripped main.Greet: %+v, want the name with the no-DWARF note", fns)
	}
}

func TestTypeLayout(t *testing.T) {
	b := openFixture(t, variantFull)
	ti, err := b.TypeLayout("*github.com/routerscope/routerscope/probes/testdata/fixture/shapes.Request")
	if err != nil {
		t.Fatal(err)
	}
	var r shapes.Request
	want := []FieldInfo{
		{Name: "Model", Offset: int64(unsafe.Offsetof(r.Model)), Size: 16, Type: "string", Readable: true},
		{Name: "MaxTokens", Offset: int64(unsafe.Offsetof(r.MaxTokens)), Size: 8, Type: "int", Readable: true},
		{Name: "Stream", Offset: int64(unsafe.Offsetof(r.Stream)), Size: 1, Type: "bool", Readable: true},
		{Name: "Tags", Offset: int64(unsafe.Offsetof(r.Tags)), Size: 24, Type: "[]string", Readable: true},
		{Name: "Meta", Offset: int64(unsafe.Offsetof(r.Meta)), Size: 8, Type: "*github.com/routerscope/routerscope/probes/testdata/fixture/shapes.Meta"},
		{Name: "Cat", Offset: int64(unsafe.Offsetof(r.Cat)), Size: int64(unsafe.Sizeof(r.Cat)), Type: "github.com/routerscope/routerscope/probes/testdata/fixture/shapes.Category"},
		{Name: "Limit", Offset: int64(unsafe.Offsetof(r.Limit)), Size: 8, Type: "*int", Readable: true},
	}
	if ti.Kind != "struct" || ti.Size != int64(unsafe.Sizeof(r)) || len(ti.Fields) != len(want) {
		t.Fatalf("layout:\n%s", ti)
	}
	for i, f := range want {
		if ti.Fields[i] != f {
			t.Errorf("field %d: got %+v, want %+v", i, ti.Fields[i], f)
		}
	}
	if !strings.Contains(ti.String(), "MaxTokens") {
		t.Errorf("String():\n%s", ti)
	}
	rt, err := b.TypeLayout("main.Router")
	if err != nil {
		t.Fatal(err)
	}
	if len(rt.Fields) != 1 || !rt.Fields[0].Embedded || rt.Fields[0].Name != "Router" {
		t.Errorf("main.Router embeds shapes.Router:\n%s", rt)
	}
	_, err = b.TypeLayout("github.com/routerscope/routerscope/probes/testdata/fixture/shapes.Reqest")
	if !errors.Is(err, ErrSymbolNotFound) || !strings.Contains(err.Error(), "shapes.Request") {
		t.Errorf("misspelt type: %v, want not found suggesting shapes.Request", err)
	}
}
