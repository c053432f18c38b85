package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// GoBenchLine is one result of the agent's Go benchmarks.
type GoBenchLine struct {
	Name string
	// Metrics by unit: ns/op, ns/span, B/op, allocs/op, wire-B/span.
	Metrics map[string]float64
}

// goBenchmarks are the agent's hot-path benchmarks, in goBenchPkg
// (agent/export/bench_test.go): export alone (span record to OTLP bytes)
// and assembly plus export.
const (
	goBenchmarks = "^(BenchmarkExportOTLP|BenchmarkAssembleAndExport)$"
	goBenchPkg   = "./agent/export"
)

// runGoBench runs the agent's hot-path benchmarks with allocation counts.
func runGoBench(ctx context.Context, repo string, short bool) ([]GoBenchLine, error) {
	n := "200000x"
	if short {
		n = "50000x"
	}
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", goBenchmarks, "-benchmem", "-benchtime", n, "-count", "1", goBenchPkg)
	cmd.Dir = repo
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go test -bench %s: %w\n%s", goBenchPkg, err, out)
	}
	lines := parseGoBench(string(out))
	if len(lines) == 0 {
		return nil, fmt.Errorf("go test -bench %s printed no benchmark:\n%s", goBenchPkg, out)
	}
	return lines, nil
}

// parseGoBench reads `go test -bench` output: a name, the iterations, then
// value-unit pairs.
func parseGoBench(out string) []GoBenchLine {
	var lines []GoBenchLine
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		l := GoBenchLine{Name: f[0], Metrics: map[string]float64{}}
		if i := strings.LastIndexByte(l.Name, '-'); i > 0 {
			l.Name = l.Name[:i] // the GOMAXPROCS suffix
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			l.Metrics[f[i+1]] = v
		}
		lines = append(lines, l)
	}
	return lines
}

func renderGoBench(b *strings.Builder, lines []GoBenchLine) {
	b.WriteString("## Agent hot path (Go benchmark, agent/export/bench_test.go)\n\n")
	b.WriteString("BenchmarkExportOTLP: finished span records (a root and a child with the guide's attribute kinds) through the queue, batching, OTLP encoding and protobuf marshalling; one op is one span. BenchmarkAssembleAndExport adds pairing entry and return events and typing attributes; one op is a request of two spans, and its allocations include the attributes each span keeps.\n\n")
	b.WriteString("| benchmark | ns/span | allocs/op | B/op | OTLP bytes/span |\n|---|---|---|---|---|\n")
	for _, l := range lines {
		m := l.Metrics
		fmt.Fprintf(b, "| %s | %.0f | %.0f | %.0f | %.0f |\n", l.Name, m["ns/span"], m["allocs/op"], m["B/op"], m["wire-B/span"])
	}
	b.WriteString("\n")
}
