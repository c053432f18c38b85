package probes

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeSpecs writes probe files into a temporary directory and returns it.
func writeSpecs(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestIncludeMergesFiles(t *testing.T) {
	dir := writeSpecs(t, map[string]string{
		"app.yaml": `include: [lib/http.yaml, lib/db.yaml]
probes:
  - {symbol: main.handle, span: app.handle, parent: http.server}
`,
		"lib/http.yaml": `probes:
  - {symbol: net/http.serverHandler.ServeHTTP, span: http.server, kind: server}
`,
		// db.yaml includes http.yaml again: read once.
		"lib/db.yaml": `include: [http.yaml]
probes:
  - {symbol: main.query, span: db.query, parent: http.server}
`,
	})
	spec, err := LoadSpec(filepath.Join(dir, "app.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var spans []string
	for _, p := range spec.Probes {
		spans = append(spans, p.Span)
	}
	if got := strings.Join(spans, ","); got != "http.server,db.query,app.handle" {
		t.Errorf("spans %s, want included files first, each once", got)
	}
	if spec.Path != filepath.Join(dir, "app.yaml") || len(spec.Files) != 3 || spec.Probes[0].Kind != "server" || spec.Probes[2].Kind != "internal" {
		t.Errorf("spec: path %s files %v probes %+v", spec.Path, spec.Files, spec.Probes)
	}
	// A file of includes only.
	dir2 := writeSpecs(t, map[string]string{
		"all.yaml":  "include: [a.yaml]\n",
		"a.yaml":    "probes: [{symbol: main.a, span: a}]\n",
		"none.yaml": "include: []\n",
	})
	if spec, err := LoadSpec(filepath.Join(dir2, "all.yaml")); err != nil || len(spec.Probes) != 1 {
		t.Errorf("includes only: %v %+v", err, spec)
	}
	if _, err := LoadSpec(filepath.Join(dir2, "none.yaml")); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "the list is empty") {
		t.Errorf("empty include list and no probes: %v", err)
	}
}

func TestIncludeErrors(t *testing.T) {
	dir := writeSpecs(t, map[string]string{
		"cycle-a.yaml":    "include: [cycle-b.yaml]\nprobes: [{symbol: main.a, span: a}]\n",
		"cycle-b.yaml":    "include: [cycle-a.yaml]\nprobes: [{symbol: main.b, span: b}]\n",
		"dup.yaml":        "include: [one.yaml]\nprobes: [{symbol: main.b, span: one}]\n",
		"one.yaml":        "probes: [{symbol: main.a, span: one}]\n",
		"dangling.yaml":   "include: [one.yaml]\nprobes: [{symbol: main.b, span: b, parent: nope}]\n",
		"missing.yaml":    "include: [gone.yaml]\nprobes: [{symbol: main.b, span: b}]\n",
		"bad.yaml":        "include: gone.yaml\nprobes: [{symbol: main.b, span: b}]\n",
		"typo.yaml":       "include: [typo-inner.yaml]\n",
		"typo-inner.yaml": "probes: [{symbol: main.a, spam: a}]\n",
	})
	for file, want := range map[string][]string{
		"cycle-a.yaml":  {"include cycle", "cycle-a.yaml -> ", "cycle-b.yaml -> ", "cycle-a.yaml;"},
		"dup.yaml":      {"dup.yaml (with ", "one.yaml)", `span name "one" is already used`},
		"dangling.yaml": {`no probe in this file has span "nope"`, "known: b, one"},
		"missing.yaml":  {"included from", "gone.yaml"},
		"bad.yaml":      {"must be a list of probe file paths"},
		"typo.yaml":     {"included from", "typo-inner.yaml", `did you mean "span"`},
	} {
		_, err := LoadSpec(filepath.Join(dir, file))
		if err == nil {
			t.Errorf("%s: loaded, want an error", file)
			continue
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v\nwant it to mention %q", file, err, w)
			}
		}
	}
}

func TestIncludeDepthBound(t *testing.T) {
	files := map[string]string{}
	for i := range maxIncludeDepth + 3 {
		files[filepath.Join("d", string(rune('a'+i))+".yaml")] = "include: [" + string(rune('a'+i+1)) + ".yaml]\nprobes: [{symbol: main.f" + string(rune('a'+i)) + ", span: s" + string(rune('a'+i)) + "}]\n"
	}
	dir := writeSpecs(t, files)
	if _, err := LoadSpec(filepath.Join(dir, "d", "a.yaml")); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "nest deeper") {
		t.Errorf("deep includes: %v", err)
	}
}

func TestSpecFiles(t *testing.T) {
	dir := writeSpecs(t, map[string]string{
		"app.yaml":         "include: [lib/http.yaml]\nprobes: [{symbol: main.a, span: a}]\n",
		"lib/http.yaml":    "probes: [{symbol: main.b, span: b}]\n",
		"app.offsets.yaml": "version: 1\n",
		"bad.yaml":         "probes: nope\n",
	})
	got := SpecFiles(filepath.Join(dir, "app.yaml"))
	want := []string{filepath.Join(dir, "app.yaml"), filepath.Join(dir, "lib/http.yaml"), filepath.Join(dir, "app.offsets.yaml")}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("SpecFiles: %v, want %v", got, want)
	}
	if got := SpecFiles(filepath.Join(dir, "bad.yaml")); len(got) != 1 {
		t.Errorf("a file that does not load: %v", got)
	}
}
