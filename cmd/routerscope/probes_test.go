package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/routerscope/routerscope/agent"
	"github.com/routerscope/routerscope/internal/testenv"
	"github.com/routerscope/routerscope/probes"
)

// routerBinary builds the router for the probes command tests.
func routerBinary(t *testing.T) string {
	t.Helper()
	return testenv.GoBuild(t, testenv.Build{Pkg: "../router", Out: filepath.Join(t.TempDir(), "router")})
}

func TestProbesList(t *testing.T) {
	bin := routerBinary(t)
	c, out, errOut := newCLI(nil, nil)
	if code := c.main(t.Context(), []string{"probes", "list", "--binary", bin, "--match", `router\.\(\*Router\)\.(classify|bestModel)$`}); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// classify's parameters change with the router; its receiver, a
	// ChatRequest and its result do not.
	const rp = "github.com/routerscope/routerscope/router."
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], rp+"(*Router).bestModel(rt *"+rp+"Router, category string)") ||
		!strings.Contains(lines[0], "[cannot probe: inlined") ||
		!strings.HasPrefix(lines[1], rp+"(*Router).classify(rt *"+rp+"Router, ") || !strings.Contains(lines[1], " *"+rp+"ChatRequest") ||
		!strings.HasSuffix(lines[1], ") *"+rp+"Classification") {
		t.Errorf("list:\n%s\nwant bestModel (inlined), then classify with its signature", out)
	}

	c, out, errOut = newCLI(nil, nil)
	if code := c.main(t.Context(), []string{"probes", "list", "--binary", bin, "--type", "github.com/routerscope/routerscope/router.Classification", "--json"}); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var ti probes.TypeInfo
	if err := json.Unmarshal(out.Bytes(), &ti); err != nil || ti.Kind != "struct" || len(ti.Fields) == 0 || ti.Fields[0].Name != "Category" {
		t.Errorf("--type --json: %v\n%s", err, out)
	}

	c, _, errOut = newCLI(nil, nil)
	if code := c.main(t.Context(), []string{"probes", "list", "--binary", bin, "--type", "router.Classification"}); code != exitRuntime ||
		!strings.Contains(errOut.String(), "did you mean github.com/routerscope/routerscope/router.Classification") {
		t.Errorf("short type name: exit %d, %s", code, errOut)
	}
	c, _, errOut = newCLI(nil, nil)
	if code := c.main(t.Context(), []string{"probes", "list"}); code != exitUsage || !strings.Contains(errOut.String(), "--binary is required") {
		t.Errorf("no binary: exit %d, %s", code, errOut)
	}
}

func TestProbesVerify(t *testing.T) {
	bin := routerBinary(t)
	c, out, errOut := newCLI(nil, nil)
	if code := c.main(t.Context(), []string{"probes", "verify", "--binary", bin, "--probes", "../../config/probes/semantic-router.yaml"}); code != exitOK {
		t.Fatalf("default probes: exit %d: %s\n%s", code, errOut, out)
	}
	if !strings.Contains(out.String(), "PUSHQ BP (emulated)") || !strings.Contains(out.String(), "ok: ") {
		t.Errorf("report:\n%s", out)
	}

	bad := writeFile(t, "bad.yaml", `probes:
  - symbol: github.com/routerscope/routerscope/router.(*Router).classify
    span: c
    attributes:
      - {name: x, from: return:0.Categroy}
  - symbol: github.com/routerscope/routerscope/router.(*Router).clasify
    span: d
`)
	c, out, errOut = newCLI(nil, nil)
	code := c.main(t.Context(), []string{"probes", "verify", "--binary", bin, "--probes", bad, "--json"})
	if code != exitRuntime {
		t.Errorf("problems: exit %d, want %d: %s", code, exitRuntime, errOut)
	}
	var rep probes.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("JSON: %v\n%s", err, out)
	}
	if rep.OK || len(rep.Probes) != 2 || !rep.Probes[0].Resolved || len(rep.Probes[0].Problems) != 1 ||
		!strings.Contains(rep.Probes[0].Problems[0], "no field Categroy") || rep.Probes[1].Resolved ||
		!strings.Contains(rep.Probes[1].Problems[0], "did you mean github.com/routerscope/routerscope/router.(*Router).classify") {
		t.Errorf("report: %+v", rep)
	}

	c, _, errOut = newCLI(nil, nil)
	invalid := writeFile(t, "invalid.yaml", "probes:\n  - symbol: x\n    spam: y\n")
	if code := c.main(t.Context(), []string{"probes", "verify", "--binary", bin, "--probes", invalid}); code != exitUsage || !strings.Contains(errOut.String(), `did you mean "span"`) {
		t.Errorf("invalid spec: exit %d, %s", code, errOut)
	}
}

func TestProbesExtract(t *testing.T) {
	bin := routerBinary(t)
	dir := t.TempDir()
	sw := testenv.GoBuild(t, testenv.Build{Pkg: "../router", Out: filepath.Join(dir, "router-sw"), Flags: []string{"-ldflags=-s -w"}})
	spec := writeFile(t, "router.yaml", `probes:
  - symbol: github.com/routerscope/routerscope/router.(*Router).classify
    span: c
    attributes: [{name: x, from: return:0.Category}]
`)
	c, out, errOut := newCLI(nil, nil)
	if code := c.main(t.Context(), []string{"probes", "extract", "--binary", bin, "--probes", spec, "--for", sw}); code != exitOK {
		t.Fatalf("extract: exit %d: %s", code, errOut)
	}
	offsets := strings.TrimSuffix(spec, ".yaml") + ".offsets.yaml"
	if !strings.Contains(out.String(), offsets+": 1 probes for build id go:") || strings.Count(out.String(), "\n") != 2 {
		t.Errorf("extract output:\n%s", out)
	}
	off, err := probes.ReadOffsets(offsets)
	if err != nil || len(off.Builds) != 2 {
		t.Fatalf("offsets: %v %+v", err, off)
	}
	// The agent's resolution of the -s -w build finds it beside the spec.
	prog, err := resolve(agent.AttachRequest{Executable: sw, Probes: []string{spec}})
	if err != nil || len(prog.Probes) != 1 || len(prog.Probes[0].Return) != 1 {
		t.Errorf("resolve the -s -w build: %v %+v", err, prog)
	}

	// --for a binary of other code is refused.
	c, _, errOut = newCLI(nil, nil)
	if code := c.main(t.Context(), []string{"probes", "extract", "--binary", bin, "--probes", spec, "--for", os.Args[0], "-o", filepath.Join(dir, "x.yaml")}); code != exitRuntime ||
		!strings.Contains(errOut.String(), "not a build of the same code") {
		t.Errorf("--for other code: exit %d, %s", code, errOut)
	}
	// Extracting from a binary without DWARF says what it needs.
	c, _, errOut = newCLI(nil, nil)
	if code := c.main(t.Context(), []string{"probes", "extract", "--binary", sw, "--probes", spec, "-o", filepath.Join(dir, "y.yaml")}); code != exitRuntime ||
		!strings.Contains(errOut.String(), "DWARF") {
		t.Errorf("extract from -s -w: exit %d, %s", code, errOut)
	}
}
