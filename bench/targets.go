package main

import (
	"fmt"
	"strings"
	"time"
)

// Issue 12's targets, checked against the run.
const (
	targetPct15ms      = 1.0  // always_on entry-only: added p50 at 15 ms, % of the router's
	targetPctSampled   = 0.2  // probabilistic 0.1: added p50 at 15 ms, %
	targetCPUFloor     = 1.5  // added router CPU per request / trap floor
	targetBPFPerHitUs  = 1.5  // eBPF program run time per hit
	targetAgentUsSpan  = 10.0 // agent CPU per span at targetStressRate
	targetAgentRSSMiB  = 40.0
	targetStressRate   = 20000.0
	targetIdleMsPerSec = 0.1 // "nothing measurable": 0.01% of a core
)

// findRow returns the row of a block whose name starts with prefix.
func findRow(blk *Block, prefix string) *Row {
	for i := range blk.Rows {
		if strings.HasPrefix(blk.Rows[i].Name, prefix) {
			return &blk.Rows[i]
		}
	}
	return nil
}

func findBlock(r *Report, lat time.Duration) *Block {
	for i := range r.Blocks {
		if r.Blocks[i].Backend == lat && len(r.Blocks[i].Rows) > 0 {
			return &r.Blocks[i]
		}
	}
	return nil
}

// addedP50 is a row's paired added p50 over its block's baseline.
func addedP50(blk *Block, row *Row) time.Duration {
	return pairedMedian(row.RoundP50, blk.Rows[0].RoundP50)
}

// verdict says whether got <= want, and by how much it misses.
func verdict(got, want float64, unit string) string {
	if got <= want {
		return "met"
	}
	return fmt.Sprintf("**missed** by %.2f %s (%.1fx)", got-want, unit, got/want)
}

// renderTargets writes the targets with what this run measured.
func renderTargets(b *strings.Builder, r *Report) {
	type line struct{ target, measured, result string }
	var lines []line
	add := func(target, measured, result string) { lines = append(lines, line{target, measured, result}) }
	mainRow := func(blk *Block) (*Row, string) {
		if row := findRow(blk, "agent always_on, entry-only"); row != nil {
			return row, "entry-only"
		}
		return findRow(blk, "agent always_on"), "RET mode: no entry-only run"
	}
	if blk := findBlock(r, 0); blk != nil {
		row, mode := mainRow(blk)
		sdk := findRow(blk, "in-process OTel SDK")
		if row != nil && sdk != nil {
			got, want := us(addedP50(blk, row)), us(addedP50(blk, sdk))
			add("always_on added p50 at 0 ms <= the in-process SDK's", fmt.Sprintf("%+.0f us vs %+.0f us (%s)", got, want, mode), verdict(got, want, "us"))
		}
		if row != nil && row.Agent != nil && row.Agent.Attached {
			a := row.Agent
			if floor := floorPerRequestUs(a, r.Floor); floor > 0 {
				cpu := us(pairedMedian(row.RoundCPU, blk.Rows[0].RoundCPU))
				add(fmt.Sprintf("added router CPU per request <= %.1fx the trap floor (0 ms)", targetCPUFloor),
					fmt.Sprintf("%+.0f us / %.0f us = %.2fx (%s)", cpu, floor, cpu/floor, mode), verdict(cpu/floor, targetCPUFloor, "x"))
			}
			if a.BPF.Runs > 0 {
				hit := us(a.BPF.Runtime) / float64(a.BPF.Runs)
				add(fmt.Sprintf("eBPF run time per hit <= %.1f us", targetBPFPerHitUs), fmt.Sprintf("%.2f us (%s)", hit, mode), verdict(hit, targetBPFPerHitUs, "us"))
			}
		}
	}
	if blk := findBlock(r, 15*time.Millisecond); blk != nil {
		base := blk.Rows[0].P50
		if row, mode := mainRow(blk); row != nil && base > 0 {
			pct := 100 * float64(addedP50(blk, row)) / float64(base)
			add(fmt.Sprintf("always_on added p50 at 15 ms <= %.1f%%", targetPct15ms), fmt.Sprintf("%+.2f%% (%s)", pct, mode), verdict(pct, targetPct15ms, "points"))
		}
		if row := findRow(blk, "agent probabilistic 0.1"); row != nil && base > 0 {
			pct := 100 * float64(addedP50(blk, row)) / float64(base)
			add(fmt.Sprintf("probabilistic 0.1 added p50 at 15 ms <= %.1f%%", targetPctSampled), fmt.Sprintf("%+.2f%%", pct), verdict(pct, targetPctSampled, "points"))
		}
	}
	if s := r.Stress; s != nil {
		for _, st := range s.Steps {
			if st.Rate != targetStressRate {
				continue
			}
			perSpan := 0.0
			if st.Spans > 0 {
				perSpan = us(st.CPU) / float64(st.Spans)
			}
			rss := float64(st.RSS) / (1 << 20)
			add(fmt.Sprintf("agent <= %.0f us CPU per span at %.0f spans/s", targetAgentUsSpan, targetStressRate),
				fmt.Sprintf("%.1f us at %.0f spans/s achieved", perSpan, st.Achieved), verdict(perSpan, targetAgentUsSpan, "us"))
			add(fmt.Sprintf("agent <= %.0f MiB RSS at %.0f spans/s", targetAgentRSSMiB, targetStressRate), fmt.Sprintf("%.1f MiB resident under load (peak %.1f MiB while attaching)", rss, float64(st.PeakRSS)/(1<<20)), verdict(rss, targetAgentRSSMiB, "MiB"))
			lost := "nothing dropped or lost"
			result := "met"
			if !st.complete() {
				lost = fmt.Sprintf("%d of %d spans exported, %d dropped, %d events lost", st.Exported, st.Spans, st.Dropped, st.Lost)
				result = "**missed**"
			}
			add(fmt.Sprintf("nothing dropped or lost at %.0f spans/s", targetStressRate), lost, result)
		}
	}
	if r.Idle != nil {
		msps := float64(r.Idle.PerSecond().Nanoseconds()) / 1e6
		add(fmt.Sprintf("idle agent <= %.1f ms CPU per second", targetIdleMsPerSec), fmt.Sprintf("%.3f ms/s", msps), verdict(msps, targetIdleMsPerSec, "ms/s"))
	}
	if len(lines) == 0 {
		return
	}
	b.WriteString("## Targets (issue 12)\n\n| target | measured | result |\n|---|---|---|\n")
	for _, l := range lines {
		fmt.Fprintf(b, "| %s | %s | %s |\n", l.target, l.measured, l.result)
	}
	b.WriteString("\n")
}
