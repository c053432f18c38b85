package agent

import (
	"go/build"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/routerscope/routerscope"

// agentImports is the import graph of agent and its packages (agent/doc.go
// draws it): each package's imports from the agent tree, and nothing else.
// A package added to the tree, or an edge added to it, must be added here,
// so a change of direction is a visible decision.
var agentImports = map[string][]string{
	"agent":                {"agent/config", "agent/discovery", "agent/export", "agent/spans"},
	"agent/config":         {},
	"agent/discovery":      {"agent/config"},
	"agent/export":         {"agent/config", "agent/spans"},
	"agent/spans":          {},
	"agent/spans/spantest": {"agent/config", "agent/spans"},
}

// mayImportAgent are the folders outside agent/ whose packages may import
// it: the mains, the benchmark and the deployment tooling. probes, bpf,
// router and internal/ never do.
var mayImportAgent = []string{"cmd/", "bench", "deploy/", "e2e"}

// TestImportDirection checks every package of the module against the
// graph: the edges inside agent/ are the ones agentImports lists, nothing
// outside cmd/, bench, deploy/ and e2e imports agent/, and the shared test
// fixtures (spantest) are imported by tests only.
func TestImportDirection(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != root && (name == "testdata" || name == "build" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
			return filepath.SkipDir
		}
		pkg, err := build.ImportDir(path, 0)
		if err != nil {
			return nil // no Go files, or none for this platform
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		checkPackage(t, rel, pkg, seen)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p := range agentImports {
		if !seen[p] {
			t.Errorf("agentImports lists %s, which has no Go package: update the graph", p)
		}
	}
	if !seen["agent"] || !seen["probes"] {
		t.Fatalf("walked %v: the module's packages were not found", seen)
	}
}

func checkPackage(t *testing.T, rel string, pkg *build.Package, seen map[string]bool) {
	t.Helper()
	seen[rel] = true
	own := func(imports []string) []string {
		var out []string
		for _, imp := range imports {
			if p, ok := strings.CutPrefix(imp, module+"/"); ok {
				out = append(out, p)
			}
		}
		return out
	}
	inAgent := func(p string) bool { return p == "agent" || strings.HasPrefix(p, "agent/") }
	imports := own(pkg.Imports)
	allowed, listed := agentImports[rel]
	switch {
	case inAgent(rel) && !listed:
		t.Errorf("%s is not in the import graph (agentImports, agent/doc.go): add it", rel)
	case inAgent(rel):
		for _, imp := range imports {
			if inAgent(imp) && !slices.Contains(allowed, imp) {
				t.Errorf("%s imports %s: that edge is not in the import graph (agent/doc.go)", rel, imp)
			}
		}
	default:
		mayImport := slices.ContainsFunc(mayImportAgent, func(p string) bool { return rel == p || strings.HasPrefix(rel, p) })
		for _, imp := range append(imports, own(pkg.TestImports)...) {
			if inAgent(imp) && !mayImport {
				t.Errorf("%s imports %s: only cmd/, bench, deploy/ and e2e may import the agent", rel, imp)
			}
		}
	}
	for _, imp := range imports {
		if imp == "agent/spans/spantest" {
			t.Errorf("%s imports the test fixtures (spantest) outside its tests", rel)
		}
	}
}
