package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/routerscope/routerscope/internal/spanname"
	"github.com/routerscope/routerscope/internal/testenv"
)

// TestStrippedRouter traces routers that have no DWARF: one built with
// -ldflags='-s -w' and a strip(1)ped copy of the normal build. The
// locations come from an offsets file that `routerscope probes extract`
// wrote from the normal build, beside the probe file; the traces are the
// same full trees as with DWARF.
func TestStrippedRouter(t *testing.T) {
	testenv.RequireBPF(t, "the end-to-end eBPF test")
	dir := t.TempDir()
	sw := testenv.GoBuild(t, testenv.Build{Pkg: "./cmd/router", Out: filepath.Join(dir, "router-sw"), Dir: repoRoot(), Flags: []string{"-ldflags=-s -w"}})
	stripped := filepath.Join(dir, "router-stripped")
	data, err := os.ReadFile(bins.router)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stripped, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("strip", stripped).CombinedOutput(); err != nil {
		t.Fatalf("strip: %v\n%s", err, out)
	}
	// The probe file in a directory of its own, so the offsets file is
	// written beside it and not into the repository.
	probeFile := filepath.Join(dir, "semantic-router.yaml")
	spec, err := os.ReadFile(filepath.Join(repoRoot(), "config/probes/semantic-router.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(probeFile, spec, 0o644); err != nil {
		t.Fatal(err)
	}

	// Without an offsets file the -s -w router cannot be resolved.
	out, err := exec.Command(bins.agentBin, "probes", "verify", "--binary", sw, "--probes", probeFile).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "DWARF") {
		t.Errorf("verify on the -s -w router: %v\n%s", err, out)
	}
	out, err = exec.Command(bins.agentBin, "probes", "extract", "--binary", bins.router, "--probes", probeFile, "--for", sw).CombinedOutput()
	if err != nil {
		t.Fatalf("extract: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "semantic-router.offsets.yaml")); err != nil || strings.Count(string(out), "9 probes for build id") != 2 {
		t.Fatalf("extract wrote no offsets file beside the probe file: %v\n%s", err, out)
	}

	// With it, verify checks the -s -w router as the agent will resolve it.
	out, err = exec.Command(bins.agentBin, "probes", "verify", "--binary", sw, "--probes", probeFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "locations from "+filepath.Join(dir, "semantic-router.offsets.yaml")) {
		t.Errorf("verify on the -s -w router with its offsets: %v\n%s", err, out)
	}

	for _, bin := range []string{sw, stripped} {
		t.Run(filepath.Base(bin), func(t *testing.T) {
			recv, collector := pipeline(t)
			s := &stack{}
			s.fakellm = start(t, "fakellm", nil, bins.fakellm, "--listen", "127.0.0.1:0")
			s.llmAddr = s.fakellm.waitFor(t, listenRE, 10*time.Second)
			s.router = start(t, "router", nil, bin, "--config", "config/router.yaml", "--listen", "127.0.0.1:0", "--backend", s.llmAddr)
			s.routerAddr = s.router.waitFor(t, listenRE, 10*time.Second)
			s.attachAgent(t, agentConfig(t, collector), "--probes", probeFile)

			reqs := []chatReq{
				{Name: "math", Model: "auto", Prompt: mathPrompt, ID: "req-math", User: "u-1"},
				{Name: "code", Model: "auto", Prompt: codePrompt, ID: "req-code"},
			}
			resps := map[string]chatResp{}
			for _, r := range reqs {
				resps[r.ID] = s.send(t, r)
			}
			trees := byRequestID(t, buildTrees(t, waitSpans(t, recv, s.metricsAddr, 18)))
			checkRoots(t, s, trees, reqs, resps, func(r chatReq, tr *tree) {
				tr.checkStages(t, stagesFull)
				checkFull(t, s, tr, resps[r.ID], false)
			})
			if tr := trees["req-math"]; tr != nil {
				wantStr(t, tr.child(t, spanname.Classify), "category.name", "math")
			}
		})
	}
}
