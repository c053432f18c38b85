package strictyaml

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func parse(t testing.TB, doc string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatalf("parse %q: %v", doc, err)
	}
	return n.Content[0]
}

type settings struct {
	Name    string
	On      bool
	N       int
	Rate    float64
	Wait    time.Duration
	Tags    []string
	Headers map[string]string
}

func (s *settings) fields() Fields {
	return Fields{
		"name": String(&s.Name), "on": Bool(&s.On), "n": Int(&s.N), "rate": Float(&s.Rate),
		"wait": Duration(&s.Wait), "tags": StringList(&s.Tags), "headers": StringMap(&s.Headers),
	}
}

// TestMapping: a well-typed mapping decodes; every mistake names the full
// key path, its line, and what is allowed or wanted there.
func TestMapping(t *testing.T) {
	var s settings
	doc := "name: a\non: true\nn: 3\nrate: 0.5\nwait: 2s\ntags: [x, y]\nheaders: {k: v}\n"
	if err := Mapping(parse(t, doc), "top", s.fields()); err != nil {
		t.Fatal(err)
	}
	if s.Name != "a" || !s.On || s.N != 3 || s.Rate != 0.5 || s.Wait != 2*time.Second || len(s.Tags) != 2 || s.Headers["k"] != "v" {
		t.Fatalf("decoded %+v", s)
	}
	bad := map[string]string{
		"name: a\nnmae: b\n":  "top.nmae (line 2): unknown key, allowed keys in top: headers, n, name, on, rate, tags, wait",
		"n: 1\nn: 2\n":        "top.n (line 2): key given twice",
		"name: 3\n":           `top.name (line 1): want a string, got integer "3"`,
		"on: yes please\n":    `top.on (line 1): want a boolean (true or false), got string "yes please"`,
		"n: [1]\n":            "top.n (line 1): want an integer, got a list",
		"rate: .nan\n":        "top.rate (line 1): .nan is not a finite number",
		"wait: 10\n":          `top.wait (line 1): want a duration such as "10s" or "500ms", got integer "10"`,
		"wait: soon\n":        `top.wait (line 1): "soon" is not a duration, write e.g. "10s" or "500ms"`,
		"tags:\n  - a\n  - 1": `top.tags[1] (line 3): want a string, got integer "1"`,
		"headers: {k: 1}\n":   `top.headers.k (line 1): want a string, got integer "1"`,
		"headers: [a]\n":      "top.headers (line 1): want a mapping of strings, got a list",
	}
	for doc, want := range bad {
		var s settings
		err := Mapping(parse(t, doc), "top", s.fields())
		var e *Error
		if !errors.As(err, &e) || err.Error() != want {
			t.Errorf("%q:\n got %v\nwant %s", doc, err, want)
		}
	}
	if err := Mapping(parse(t, "- a\n"), "top", s.fields()); err == nil || err.Error() != "top (line 1): want a mapping, got a list" {
		t.Errorf("a list for a mapping: %v", err)
	}
}

// TestKeysAndLookup: keys come in document order with repeats marked;
// Lookup finds the first, and nothing in a non-mapping.
func TestKeysAndLookup(t *testing.T) {
	m := parse(t, "a: 1\nb: 2\na: 3\n")
	keys := Keys(m)
	if len(keys) != 3 || keys[0].Repeated || keys[1].Repeated || !keys[2].Repeated || keys[2].Line != 3 {
		t.Fatalf("keys %+v", keys)
	}
	if v := Lookup(m, "a"); v == nil || v.Value != "1" {
		t.Errorf("Lookup a: %v", v)
	}
	if Lookup(m, "c") != nil || Lookup(parse(t, "[a]"), "a") != nil || Lookup(nil, "a") != nil {
		t.Error("Lookup found a key that is not there")
	}
}

// TestSyntaxError: the error names the line of the mistake, not the line
// where its block began.
func TestSyntaxError(t *testing.T) {
	data := []byte("tracing:\n  exporter:\n    type: otlp\n   endpoint: x\n")
	var n yaml.Node
	err := yaml.Unmarshal(data, &n)
	if err == nil {
		t.Fatal("no syntax error")
	}
	if got := SyntaxError(data, err); !strings.HasPrefix(got, "line 4: ") {
		t.Errorf("got %q, want the mistake's line 4", got)
	}
}

// TestDecode: unknown struct keys are refused, an empty document is io.EOF.
func TestDecode(t *testing.T) {
	var v struct {
		Name string `yaml:"name"`
	}
	if err := Decode([]byte("name: a\n"), &v); err != nil || v.Name != "a" {
		t.Errorf("got %v, %+v", err, v)
	}
	if err := Decode([]byte("nmae: a\n"), &v); err == nil || !strings.Contains(err.Error(), "field nmae not found") {
		t.Errorf("unknown key: %v", err)
	}
	if err := Decode(nil, &v); !errors.Is(err, io.EOF) {
		t.Errorf("empty: %v", err)
	}
}

// FuzzMapping: any document decodes or fails with an *Error, never panics.
func FuzzMapping(f *testing.F) {
	f.Add("name: a\ntags: [x]\nheaders: {k: v}\n")
	f.Add("n: 99999999999999999999999\nrate: .inf\n")
	f.Add("tags: &a [x]\nheaders: *a\n")
	f.Fuzz(func(t *testing.T, doc string) {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
			_ = SyntaxError([]byte(doc), err)
			return
		}
		if len(n.Content) == 0 {
			return
		}
		var s settings
		err := Mapping(n.Content[0], "top", s.fields())
		var e *Error
		if err != nil && !errors.As(err, &e) {
			t.Fatalf("error of another type: %v", err)
		}
	})
}
