package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/routerscope/routerscope/probes"
)

func TestBuildSetupsByProbeMode(t *testing.T) {
	dir := t.TempDir()
	ret := filepath.Join(dir, "ret.yaml")
	entry := filepath.Join(dir, "entry.yaml")
	retDoc := "probes:\n  - symbol: main.a\n    span: a\n"
	entryDoc := "probes:\n  - symbol: main.a\n    span: a\n    end: next\n  - symbol: main.b\n    span: b\n    end: \"next\"\n"
	for path, doc := range map[string]string{ret: retDoc, entry: entryDoc} {
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	names := func(ss []setup) string {
		var n []string
		for _, s := range ss {
			n = append(n, s.name+"="+filepath.Base(s.probes))
		}
		return strings.Join(n, ", ")
	}

	// Today's files: a RET-mode file only; entry-only is skipped.
	all, skipped, err := buildSetups(params{out: dir, short: true, probesRet: ret, probesEntry: ret})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(all); got != "router alone=., agent always_on, RET mode=ret.yaml, agent probabilistic 0.1=ret.yaml, agent always_off=ret.yaml, in-process OTel SDK=." {
		t.Errorf("RET file only: %s", got)
	}
	if len(skipped) != 1 || !strings.Contains(skipped[0], "entry-only") {
		t.Errorf("skipped %q", skipped)
	}

	// An entry-only default: RET mode runs on its twin, the rest on it.
	all, skipped, err = buildSetups(params{out: dir, short: true, probesRet: entry, probesEntry: entry})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(all); got != "router alone=., agent always_on, RET mode=probes-ret-mode.yaml, agent always_on, entry-only=entry.yaml, agent probabilistic 0.1=entry.yaml, agent always_off=entry.yaml, in-process OTel SDK=." || len(skipped) != 0 {
		t.Errorf("entry-only file: %s; skipped %q", got, skipped)
	}
	twin, err := os.ReadFile(filepath.Join(dir, "probes-ret-mode.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(twin), "next") || strings.Count(string(twin), "end: return") != 2 {
		t.Errorf("RET twin:\n%s", twin)
	}
	if m, _ := probeMode(filepath.Join(dir, "probes-ret-mode.yaml")); m != modeReturn {
		t.Errorf("twin mode %s", m)
	}
}

// TestBuildSetupsOnlyAndBefore: --setups keeps the router alone and the
// matching setups, and --agent-before adds an entry-only setup run from
// the other build, under a name the report's row lookups do not take for
// the current build's.
func TestBuildSetupsOnlyAndBefore(t *testing.T) {
	dir := t.TempDir()
	entry := filepath.Join(dir, "entry.yaml")
	if err := os.WriteFile(entry, []byte("probes:\n  - symbol: main.a\n    span: a\n    end: next\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := params{out: dir, probesRet: entry, probesEntry: entry, pick: regexp.MustCompile("entry-only|propagation"), agentBefore: "/old/bench"}
	all, skipped, err := buildSetups(p)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range all {
		names = append(names, s.name)
	}
	want := []string{"router alone", "agent always_on, entry-only", "agent always_on, no trace-context propagation", beforeSetup}
	if !slices.Equal(names, want) {
		t.Errorf("setups %q, want %q", names, want)
	}
	if len(skipped) != 5 {
		t.Errorf("skipped %q, want the 5 setups --setups left out", skipped)
	}
	if b := all[len(all)-1]; b.agentBin != "/old/bench" || b.sampling != "always_on" || b.probes != entry {
		t.Errorf("before setup %+v", b)
	}
	for _, s := range all[:len(all)-1] {
		if s.agentBin != "" {
			t.Errorf("%s runs another build: %q", s.name, s.agentBin)
		}
	}
	blk := &Block{Rows: []Row{{Name: beforeSetup}}}
	if findRow(blk, "agent always_on") != nil {
		t.Error("the before setup's row is found as the current build's always_on row")
	}
}

func TestRetHits(t *testing.T) {
	ret := probes.ProbeStats{Uprobes: 3, Entries: 10, Returns: 9, Unmatched: 1, Skipped: 5}
	if got := retHits(ret); got != 15 {
		t.Errorf("RET-mode probe: %d RET hits, want 15", got)
	}
	next := probes.ProbeStats{Uprobes: 1, Entries: 10, Returns: 10, Skipped: 5}
	if got := retHits(next); got != 0 {
		t.Errorf("end: next probe: %d RET hits, want 0", got)
	}
}

// TestRetTwin: the RET-mode twin of the shipped file ends every probe at
// its RETs, the root included: no end: next, no end_at, and it still
// parses as a probe spec.
func TestRetTwin(t *testing.T) {
	out := filepath.Join(t.TempDir(), "ret.yaml")
	path, err := retTwin(filepath.Join("..", "config", "probes", "semantic-router.yaml"), out)
	if err != nil || path != out {
		t.Fatalf("retTwin: %q, %v", path, err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "end_at:") || entryOnlyRE.Match(data) {
		t.Errorf("the twin keeps an end: next or end_at:\n%s", data)
	}
	spec, err := probes.ParseSpec(data, out)
	if err != nil {
		t.Fatalf("parse the twin: %v", err)
	}
	for _, p := range spec.Probes {
		if p.End != probes.EndReturn || p.EndAt != "" {
			t.Errorf("%s: end %q, end_at %q", p.Symbol, p.End, p.EndAt)
		}
	}
}

// TestIdleSetupNotBefore: the idle agent is the current build's, even
// though the --agent-before setup's name also says entry-only.
func TestIdleSetupNotBefore(t *testing.T) {
	all := []setup{
		{name: "router alone"},
		{name: "agent always_on, entry-only", sampling: "always_on", placement: "prologue"},
		{name: beforeSetup, sampling: "always_on", placement: "prologue", agentBin: "/old/bench"},
	}
	if got := idleSetup(all); got.name != "agent always_on, entry-only" {
		t.Errorf("idle setup %q", got.name)
	}
}
