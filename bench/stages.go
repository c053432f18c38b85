package main

import (
	"fmt"
	"slices"
	"strings"
)

// renderStages compares the mean duration of each span name between the
// RET-mode and entry-only always_on runs of each block: what ending a
// stage at the next stage's start (end: next) instead of at its own RET
// does to the durations users see. With one mode only, its means are
// shown alone.
func renderStages(b *strings.Builder, r *Report) {
	for _, blk := range r.Blocks {
		ret, entry := findRow(&blk, "agent always_on, RET mode"), findRow(&blk, "agent always_on, entry-only")
		var modes []*Row
		for _, row := range []*Row{ret, entry} {
			if row != nil && row.Agent != nil && len(row.Agent.Durations) > 0 {
				modes = append(modes, row)
			}
		}
		if len(modes) == 0 {
			continue
		}
		names := map[string]bool{}
		for _, row := range modes {
			for n := range row.Agent.Durations {
				names[n] = true
			}
		}
		sorted := slices.Sorted(func(yield func(string) bool) {
			for n := range names {
				if !yield(n) {
					return
				}
			}
		})
		fmt.Fprintf(b, "## Stage durations at %v: mean exported span duration by mode\n\n", blk.Backend)
		header, sep := "| span |", "|---|"
		for _, row := range modes {
			header += fmt.Sprintf(" %s spans | %s mean us |", row.Name, row.Name)
			sep += "---|---|"
		}
		both := len(modes) == 2
		if both {
			header += " entry-only - RET mode us | change |"
			sep += "---|---|"
		}
		b.WriteString(header + "\n" + sep + "\n")
		for _, n := range sorted {
			line := "| " + n + " |"
			var means []float64
			for _, row := range modes {
				d := row.Agent.Durations[n]
				means = append(means, us(d.Mean()))
				if d.Count == 0 {
					line += " 0 | - |"
					continue
				}
				line += fmt.Sprintf(" %d | %.0f |", d.Count, us(d.Mean()))
			}
			if both {
				if modes[0].Agent.Durations[n].Count > 0 && modes[1].Agent.Durations[n].Count > 0 {
					diff := means[1] - means[0]
					pct := "-"
					if means[0] > 0 {
						pct = fmt.Sprintf("%+.0f%%", 100*diff/means[0])
					}
					line += fmt.Sprintf(" %+.0f | %s |", diff, pct)
				} else {
					line += " - | - |"
				}
			}
			b.WriteString(line + "\n")
		}
		b.WriteString("\n")
	}
}
