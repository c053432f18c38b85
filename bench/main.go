// Command bench is the overhead benchmark behind `make bench`. Run as root:
//
//	go run ./bench [--out build/bench] [--short] [--rounds 4] [--requests 900]
//	               [--probes RET-MODE-FILE] [--probes-entry-only FILE]
//
// It builds the router, the fake model server, the comparator and a floor
// fixture, then measures, interleaved in rounds to cancel machine noise:
// the router alone, with the agent (always_on in RET mode and in
// entry-only mode, each from its own probe file, probabilistic 0.1,
// always_off, and in a full run always_on with the naive entry placement
// and without propagation) and the in-process OpenTelemetry comparator,
// at fake model latencies of 0 and 15 ms; the bare cost of a uprobe hit
// per instruction kind; an attached agent's idle CPU; the span rate the
// agent sustains into a real collector; and the agent's Go benchmarks
// (allocations per span). The report checks issue 12's targets. --short
// is a quick run. The Markdown report goes to OUT/report.md and to stdout.
//
// `bench agent ...` is the agent process the harness starts (see runAgent).
package main

import (
	"fmt"
	"os"
)

func main() {
	var err error
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		err = runAgent(os.Args[2:])
	} else {
		err = runBench(os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
