package main

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
)

// Probe modes of a setup's probe file.
const (
	// modeReturn ends every span at its function's RETs (end: return, the
	// spec's default).
	modeReturn = "RET mode"
	// modeEntryOnly ends spans where their next sibling starts or their
	// parent ends (end: next), the root at its end_at function's entry, so
	// no probe keeps a RET uprobe.
	modeEntryOnly = "entry-only"
)

// entryOnlyRE finds a probe declaring `end: next` in a probe file.
var entryOnlyRE = regexp.MustCompile(`(?m)^[\s-]*end:\s*["']?next\b`)

// probeMode tells which mode a probe file is written in: entry-only when
// any probe declares `end: next`.
func probeMode(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read probe file: %w", err)
	}
	if entryOnlyRE.Match(data) {
		return modeEntryOnly, nil
	}
	return modeReturn, nil
}

// defaultProbeFiles are the probe files of the RET-mode and entry-only
// setups when no flag names them: semantic-router.yaml is the shipped
// default (entry-only once its probes declare `end: next`), and
// semantic-router-ret.yaml, when present, its RET-mode twin.
func defaultProbeFiles(repo string) (ret, entryOnly string) {
	dir := filepath.Join(repo, "config", "probes")
	main := filepath.Join(dir, "semantic-router.yaml")
	ret, entryOnly = main, main
	if twin := filepath.Join(dir, "semantic-router-ret.yaml"); fileExists(twin) {
		ret = twin
	}
	return ret, entryOnly
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// buildSetups lists the setups of every round, the baseline first. The
// entry-only setup runs only when its probe file is entry-only, and the
// RET-mode one only when its file is not (otherwise both would measure
// the same thing under two names); skipped says why a setup is missing.
// The other agent setups use the entry-only file when there is one, as
// the shipped default does.
func buildSetups(p params) (all []setup, skipped []string, err error) {
	retMode, err := probeMode(p.probesRet)
	if err != nil {
		return nil, nil, fmt.Errorf("--probes %s: %w", p.probesRet, err)
	}
	entryMode, err := probeMode(p.probesEntry)
	if err != nil {
		return nil, nil, fmt.Errorf("--probes-entry-only %s: %w", p.probesEntry, err)
	}
	def, retFile := p.probesRet, p.probesRet
	if retMode == modeEntryOnly {
		// The RET-mode twin of an entry-only file: the same probes, each
		// ending at its own RETs.
		if retFile, err = retTwin(p.probesRet, filepath.Join(p.out, "probes-ret-mode.yaml")); err != nil {
			return nil, nil, err
		}
	}
	all = append(all, setup{name: "router alone"})
	if retFile != "" {
		all = append(all, setup{name: "agent always_on, RET mode", sampling: "always_on", placement: "prologue", probes: retFile})
	} else {
		skipped = append(skipped, fmt.Sprintf("always_on in RET mode: %s declares `end: next` and includes other files (name a RET-mode file with --probes)", p.probesRet))
	}
	if entryMode == modeEntryOnly {
		def = p.probesEntry
		all = append(all, setup{name: "agent always_on, entry-only", sampling: "always_on", placement: "prologue", probes: p.probesEntry})
	} else {
		skipped = append(skipped, fmt.Sprintf("always_on in entry-only mode: %s declares no `end: next` (name an entry-only file with --probes-entry-only)", p.probesEntry))
	}
	all = append(all,
		setup{name: "agent probabilistic 0.1", sampling: "probabilistic", rate: 0.1, placement: "prologue", probes: def},
		setup{name: "agent always_off", sampling: "always_off", placement: "prologue", probes: def},
	)
	if !p.short {
		all = append(all,
			setup{name: "agent always_on, naive placement", sampling: "always_on", placement: "symbol", probes: def},
			setup{name: "agent always_on, no trace-context propagation", sampling: "always_on", placement: "prologue", noPropagation: true, probes: def},
		)
	}
	all = append(all, setup{name: "in-process OTel SDK", otel: true})
	if p.agentBefore != "" {
		if entryMode != modeEntryOnly {
			return nil, nil, fmt.Errorf("--agent-before runs an always_on entry-only setup: %s declares no `end: next`", p.probesEntry)
		}
		// Not named "agent ...": the targets and stage tables look rows up
		// by that prefix and must keep finding the current build's.
		all = append(all, setup{name: beforeSetup, sampling: "always_on", placement: "prologue", probes: cmp.Or(p.probesBefore, p.probesEntry), agentBin: p.agentBefore})
	}
	if p.pick != nil {
		kept := all[:1] // the router alone: every added figure is against it
		for _, s := range all[1:] {
			if p.pick.MatchString(s.name) {
				kept = append(kept, s)
			} else {
				skipped = append(skipped, fmt.Sprintf("%s: not matched by --setups", s.name))
			}
		}
		all = kept
	}
	return all, skipped, nil
}

// beforeSetup names the --agent-before setup.
const beforeSetup = "before (--agent-before): always_on, entry-only"

// includeRE finds an include of other probe files, whose relative paths a
// copy elsewhere would break.
var includeRE = regexp.MustCompile(`(?m)^include:`)

// retTwin writes to out the RET-mode copy of an entry-only probe file
// (every `end: next` made `end: return`) and returns its path, or "" when
// the file includes others.
func retTwin(path, out string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read probe file: %w", err)
	}
	if includeRE.Match(data) {
		return "", nil
	}
	twin := regexp.MustCompile(`(?m)^([\s-]*end:\s*)["']?next\b["']?`).ReplaceAll(data, []byte("${1}return"))
	// end_at is an end: next form: in RET mode the span ends at its RETs.
	twin = regexp.MustCompile(`(?m)^[ \t]*end_at:.*\n`).ReplaceAll(twin, nil)
	if err := os.WriteFile(out, twin, 0o644); err != nil {
		return "", fmt.Errorf("write the RET-mode probe file: %w", err)
	}
	return out, nil
}
