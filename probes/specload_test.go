package probes

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseSpecValid(t *testing.T) {
	spec, err := ParseSpec([]byte(`
probes:
  - symbol: main.(*Router).classify
    span: classification
    attributes:
      - {name: category, from: "return:0.Category.Name", type: string}
      - {name: ms, from: duration_ms}
      - {name: tier, value: 3}
      - {name: tags, value: [a, b]}
      - {name: blocked, from: return:0.Blocked, map: {"true": blocked, "false": allowed}}
    error: {from: return:1}
  - symbol: main.handle
    span: request
    kind: server
  - symbol: main.call
    span: upstream
    kind: client
    parent: request
    error: {from: return:0, at_least: 500, equals: 0}
`), "ok.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if spec.Path != "ok.yaml" || len(spec.Probes) != 3 {
		t.Fatalf("spec %+v", spec)
	}
	p := spec.Probes[0]
	if p.Kind != "internal" || p.Symbol != "main.(*Router).classify" || p.Error == nil || p.Error.From != "return:1" {
		t.Errorf("probe 0: %+v", p)
	}
	if got := p.Attributes[4].Map; !reflect.DeepEqual(got, map[string]string{"true": "blocked", "false": "allowed"}) {
		t.Errorf("map %v", got)
	}
	if v, ok := p.Attributes[2].Value.(int); !ok || v != 3 {
		t.Errorf("constant %#v, want int 3", p.Attributes[2].Value)
	}
	if e := spec.Probes[2].Error; e.AtLeast == nil || *e.AtLeast != 500 || e.Equals != 0 {
		t.Errorf("error rule %+v", e)
	}
	if spec.Probes[2].Parent != "request" || spec.Probes[2].Kind != "client" {
		t.Errorf("probe 2: %+v", spec.Probes[2])
	}
}

func TestLoadSpec(t *testing.T) {
	path := filepath.Join(t.TempDir(), "probes.yaml")
	if err := os.WriteFile(path, []byte("probes:\n  - {symbol: main.f, span: f}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := LoadSpec(path)
	if err != nil || spec.Path != path || spec.Probes[0].Span != "f" {
		t.Fatalf("LoadSpec = %+v, %v", spec, err)
	}
	if _, err := LoadSpec(path + ".missing"); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "load probe spec") {
		t.Errorf("missing file: %v", err)
	}
}

// TestParseSpecErrors checks every validation error: it wraps
// ErrInvalidSpec and its message names the file, the probe and key, and
// the fix.
func TestParseSpecErrors(t *testing.T) {
	const ok = "{symbol: main.f, span: f}"
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"bad yaml", "probes: [", []string{"bad.yaml", "yaml:"}},
		{"empty", "", []string{"empty", "`probes:`"}},
		{"top level list", "- a\n- b\n", []string{"top level must be a mapping"}},
		{"no probes key", "probs:\n  - " + ok, []string{`unknown key "probs"`, `did you mean "probes"`, "no `probes:` key"}},
		{"probes not a list", "probes: {symbol: x}", []string{"probes (line 1)", "must be a list"}},
		{"probe not a mapping", "probes:\n  - main.f", []string{"probes[0]", "must be a mapping"}},
		{"unknown probe key", "probes:\n  - {symbol: main.f, span: f, kidn: server}",
			[]string{"probes[0] (main.f)", "line 2", `unknown key "kidn"`, `did you mean "kind"`}},
		{"unknown key no suggestion", "probes:\n  - {symbol: main.f, span: f, sampling: 1}",
			[]string{`unknown key "sampling"`, "allowed keys: symbol, span, kind, parent, attributes, error"}},
		{"unknown attribute key", "probes:\n  - {symbol: main.f, span: f, attributes: [{name: a, form: arg:0}]}",
			[]string{"probes[0] (main.f).attributes[0] (a)", `unknown key "form"`, `did you mean "from"`}},
		{"unknown error key", "probes:\n  - {symbol: main.f, span: f, error: {from: return:0, equal: 1}}",
			[]string{"probes[0] (main.f).error", `did you mean "equals"`}},
		{"duplicate key", "probes:\n  - symbol: main.f\n    span: f\n    span: g\n", []string{`key "span" appears twice`}},
		{"attributes not a list", "probes:\n  - {symbol: main.f, span: f, attributes: {name: a}}", []string{"attributes", "must be a list"}},
		{"attribute not a mapping", "probes:\n  - {symbol: main.f, span: f, attributes: [a]}", []string{"attributes[0]", "must be a mapping"}},
		{"error not a mapping", "probes:\n  - {symbol: main.f, span: f, error: return:1}", []string{"error", "must be a mapping like {from: return:1}"}},
		{"wrong value type", "probes:\n  - {symbol: main.f, span: f, error: {from: return:0, at_least: many}}", []string{"cannot unmarshal", "bad.yaml"}},
		{"empty probe list", "probes: []", []string{"the list is empty"}},
		{"max_bytes over the copy bound", "probes:\n  - {symbol: main.f, span: f, attributes: [{name: a, from: arg:0, max_bytes: 129}]}",
			[]string{"attributes[0] (a).max_bytes", "129 is out of range", "1 to 128"}},
		{"negative max_bytes", "probes:\n  - {symbol: main.f, span: f, attributes: [{name: a, from: arg:0, max_bytes: -1}]}",
			[]string{"max_bytes", "-1 is out of range"}},
		{"missing symbol", "probes:\n  - {span: f}", []string{"probes[0]: missing `symbol`", "go tool nm"}},
		{"duplicate symbol", "probes:\n  - " + ok + "\n  - {symbol: main.f, span: g}", []string{"probes[1] (main.f).symbol", "already probed by probes[0]"}},
		{"missing span", "probes:\n  - {symbol: main.f}", []string{"probes[0] (main.f): missing `span`"}},
		{"duplicate span", "probes:\n  - " + ok + "\n  - {symbol: main.g, span: f}", []string{"probes[1] (main.g).span", `"f" is already used by probes[0]`}},
		{"bad kind", "probes:\n  - {symbol: main.f, span: f, kind: backend}", []string{"probes[0] (main.f).kind", `"backend" is not a span kind`, "internal, server, client, producer, consumer"}},
		{"attribute without name", "probes:\n  - {symbol: main.f, span: f, attributes: [{from: arg:0}]}", []string{"attributes[0]: missing `name`"}},
		{"duplicate attribute", "probes:\n  - {symbol: main.f, span: f, attributes: [{name: a, from: arg:0}, {name: a, from: arg:1}]}",
			[]string{"attributes[1] (a).name", "declared twice"}},
		{"bad type", "probes:\n  - {symbol: main.f, span: f, attributes: [{name: a, from: arg:0, type: integer}]}",
			[]string{"attributes[0] (a).type", `"integer" is not an attribute type`, "string, int, float, bool, string_list"}},
		{"map with int type", "probes:\n  - {symbol: main.f, span: f, attributes: [{name: a, from: arg:0, type: int, map: {a: b}}]}",
			[]string{"with `map`", "must be string or omitted"}},
		{"no source", "probes:\n  - {symbol: main.f, span: f, attributes: [{name: a}]}", []string{"attributes[0] (a)", "needs `from`", "or a constant `value`"}},
		{"from and value", "probes:\n  - {symbol: main.f, span: f, attributes: [{name: a, from: arg:0, value: 1}]}", []string{"both `from` and `value`"}},
		{"constant with map", "probes:\n  - {symbol: main.f, span: f, attributes: [{name: a, value: x, map: {x: y}}]}", []string{"needs no `map`"}},
		{"constant type mismatch", "probes:\n  - {symbol: main.f, span: f, attributes: [{name: a, value: abc, type: int}]}",
			[]string{"attributes[0] (a).value", "constant abc is a string but type is int"}},
		{"float constant as int", "probes:\n  - {symbol: main.f, span: f, attributes: [{name: a, value: 1.5, type: int}]}", []string{"is a float but type is int"}},
		{"constant of no type", "probes:\n  - {symbol: main.f, span: f, attributes: [{name: a, value: {x: 1}}]}", []string{"is not a string, number, bool or list of strings"}},
		{"bad source", "probes:\n  - {symbol: main.f, span: f, attributes: [{name: a, from: args:0}]}",
			[]string{"attributes[0] (a).from", `unknown source "args:0"`, "arg:NAME, arg:INDEX"}},
		{"negative index", "probes:\n  - {symbol: main.f, span: f, attributes: [{name: a, from: arg:-1}]}", []string{"negative"}},
		{"named result", "probes:\n  - {symbol: main.f, span: f, attributes: [{name: a, from: return:err}]}", []string{"by index from 0"}},
		{"empty field", "probes:\n  - {symbol: main.f, span: f, attributes: [{name: a, from: arg:req..Model}]}", []string{`field "" in "arg:req..Model"`}},
		{"trailing dot", "probes:\n  - {symbol: main.f, span: f, attributes: [{name: a, from: receiver.}]}", []string{`field ""`}},
		{"bad field", "probes:\n  - {symbol: main.f, span: f, attributes: [{name: a, from: arg:0.1x}]}", []string{`field "1x"`}},
		{"bad arg name", "probes:\n  - {symbol: main.f, span: f, attributes: [{name: a, from: arg:a-b}]}", []string{"neither a parameter name nor an index"}},
		{"duration as string", "probes:\n  - {symbol: main.f, span: f, attributes: [{name: a, from: duration_ms, type: string}]}", []string{"a duration is a number"}},
		{"error without from", "probes:\n  - {symbol: main.f, span: f, error: {equals: true}}", []string{"probes[0] (main.f).error.from", "missing"}},
		{"error from argument", "probes:\n  - {symbol: main.f, span: f, error: {from: arg:0}}", []string{"error.from", "not a result", "return:INDEX"}},
		{"error equals string", "probes:\n  - {symbol: main.f, span: f, error: {from: return:0, equals: bad}}", []string{"error.equals", "not a bool or an integer"}},
		{"at_least with bool", "probes:\n  - {symbol: main.f, span: f, error: {from: return:0, equals: true, at_least: 3}}", []string{"error.at_least", "integer results"}},
		{"error message from argument", "probes:\n  - {symbol: main.f, span: f, error: {from: return:0, message: arg:0}}", []string{"error.message", "not a result"}},
		{"error message bad source", "probes:\n  - {symbol: main.f, span: f, error: {from: return:0, message: bogus}}", []string{"error.message"}},
		{"unknown parent", "probes:\n  - {symbol: main.f, span: f, parent: nope}", []string{"probes[0] (main.f).parent", `no probe in this file has span "nope"`, "known: f"}},
		{"own parent", "probes:\n  - {symbol: main.f, span: f, parent: f}", []string{"cannot be its own parent"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSpec([]byte(tc.yaml), "bad.yaml")
			if !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("error %v, want ErrInvalidSpec", err)
			}
			for _, w := range append([]string{"bad.yaml"}, tc.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestParseSpecCollects: all problems are reported together, one per line.
func TestParseSpecCollects(t *testing.T) {
	_, err := ParseSpec([]byte(`
probes:
  - symbol: main.f
    kind: weird
    attributes:
      - {name: a, from: nowhere}
      - {name: b}
  - span: g
    parent: missing
`), "many.yaml")
	if !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("error %v", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 6 {
		t.Errorf("%d errors, want 6 (span, kind, from, no source, symbol, parent):\n%s", len(lines), err)
	}
	// Unknown keys are reported before decoding, all at once too.
	_, err = ParseSpec([]byte("probes:\n  - {symbl: a, spam: b, attributes: [{nam: x}]}\n"), "keys.yaml")
	if n := strings.Count(err.Error(), "unknown key"); n != 3 {
		t.Errorf("%d unknown keys reported, want 3: %v", n, err)
	}
}

func TestParseSource(t *testing.T) {
	for from, want := range map[string]source{
		"arg:req":             {kind: srcArg, name: "req", index: -1},
		"arg:0":               {kind: srcArg, index: 0},
		"arg:req.Meta.User":   {kind: srcArg, name: "req", index: -1, path: []string{"Meta", "User"}},
		"arg:2.X":             {kind: srcArg, index: 2, path: []string{"X"}},
		"receiver":            {kind: srcReceiver, index: -1},
		"receiver.Cfg.Models": {kind: srcReceiver, index: -1, path: []string{"Cfg", "Models"}},
		"return:1":            {kind: srcReturn, index: 1},
		"return:0.Category":   {kind: srcReturn, index: 0, path: []string{"Category"}},
		"duration_us":         {kind: srcDuration, name: "us", index: -1},
		"arg:ÄÖ":              {kind: srcArg, name: "ÄÖ", index: -1},
	} {
		got, err := parseSource(from)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseSource(%q) = %+v, %v; want %+v", from, got, err, want)
		}
		if got.String() != from {
			t.Errorf("String() = %q, want %q", got.String(), from)
		}
	}
	for _, bad := range []string{"", "arg:", "return:", "return:-1", "arg:0.", "receiver..X", "duration", "duration_s", "args", "arg:x y"} {
		if _, err := parseSource(bad); err == nil {
			t.Errorf("parseSource(%q) succeeded", bad)
		}
	}
}

// TestValidateSpecInCode: a spec built in code (no YAML) is checked by
// Resolve through ValidateSpec.
func TestValidateSpecInCode(t *testing.T) {
	err := ValidateSpec(&Spec{Probes: []Probe{{Symbol: "main.f", Span: "f", Attributes: []Attribute{{Name: "a", From: "arg:0", Type: "text"}}}}})
	if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "<spec>: probes[0] (main.f).attributes[0] (a).type") {
		t.Errorf("ValidateSpec = %v", err)
	}
	if _, err := Resolve(nil, &Spec{}); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("Resolve(empty spec) = %v", err)
	}
}

// FuzzParseSpec: arbitrary input never panics, and an accepted spec
// validates again and has a kind on every probe.
func FuzzParseSpec(f *testing.F) {
	f.Add([]byte(fixtureSpec))
	f.Add([]byte("probes:\n  - {symbol: a, span: b, attributes: [{name: x, value: [a, 1]}], error: {from: return:0, equals: true}}"))
	f.Add([]byte("probes: &a [*a]"))
	f.Add([]byte("probes:\n  - symbol: !!binary aGVsbG8=\n    span: x\n"))
	f.Add([]byte("probes: null\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := ParseSpec(data, "fuzz.yaml")
		if err != nil {
			if !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("error without ErrInvalidSpec: %v", err)
			}
			return
		}
		if err := ValidateSpec(spec); err != nil {
			t.Fatalf("accepted spec fails validation: %v", err)
		}
		for _, p := range spec.Probes {
			if p.Kind == "" {
				t.Fatal("probe without kind")
			}
		}
	})
}
