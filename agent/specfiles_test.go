package agent

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/routerscope/routerscope/agent/config"
)

// TestProbeDigestsFollowIncludes: a change to a file a probe file includes
// changes its digest (so the reload redoes the attachments) and the file
// is watched.
func TestProbeDigestsFollowIncludes(t *testing.T) {
	dir := t.TempDir()
	app, lib := filepath.Join(dir, "app.yaml"), filepath.Join(dir, "lib.yaml")
	write := func(p, body string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(app, "include: [lib.yaml]\nprobes: [{symbol: main.a, span: a}]\n")
	write(lib, "probes: [{symbol: main.b, span: b}]\n")
	cfg := config.DefaultConfig()
	cfg.Agent.Probes = []string{app}
	before, err := probeDigests(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	write(lib, "probes: [{symbol: main.c, span: b}]\n")
	after, err := probeDigests(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if before[app] == after[app] {
		t.Errorf("digest of %s unchanged after its included file changed", app)
	}
	if files := watchedFiles(cfg); !slices.Contains(files, lib) || !slices.Contains(files, app) {
		t.Errorf("watched %v, want %s and %s", files, app, lib)
	}
}
