package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// StressStep is the agent fed one target span rate.
type StressStep struct {
	// Rate is the span rate asked of the fixture; Achieved what it made.
	Rate, Achieved float64
	Duration       time.Duration
	Spans          uint64 // opened in the kernel
	Exported       uint64 // reached the sink
	Dropped        uint64 // export queue full
	Lost           uint64 // ring buffer full
	CPU            time.Duration
	// RSS is the agent's resident memory at the end of the load, PeakRSS
	// its VmHWM (a fresh agent per step: attaching included).
	RSS, PeakRSS uint64
	// RecordBytes is the ring buffer's producer position at the end: the
	// bytes the step's records took.
	RecordBytes uint64
}

// StressResult is the agent's sustained span rate.
type StressResult struct {
	Steps []StressStep
	// Sustained is the highest achieved rate with every span exported and
	// nothing dropped or lost.
	Sustained float64
	// Collector is set when the agent exported to the real collector (else
	// straight to the sink).
	Collector bool
}

// complete tells whether every span of the step was exported.
func (st StressStep) complete() bool {
	return st.Dropped == 0 && st.Lost == 0 && st.Spans > 0 && st.Exported == st.Spans
}

// limitedByFixture is true when no step lost anything, so the sustained
// rate is the fixture's, not the agent's.
func (s *StressResult) limitedByFixture() bool {
	for _, st := range s.Steps {
		if !st.complete() {
			return false
		}
	}
	return len(s.Steps) > 0
}

func renderStress(b *strings.Builder, s *StressResult) {
	fmt.Fprintf(b, "## Agent stress: spans into the OTLP exporter\n\n")
	to := "a discarding OTLP receiver"
	if s.Collector {
		to = "routerscope's OpenTelemetry Collector (OTLP/gRPC in, batch, OTLP/gRPC out to a discarding receiver)"
	}
	fmt.Fprintf(b, "One process calls one probed function (5 attributes) at each target rate for %v; a fresh agent (always_on) exports to %s.\n\n", stressStep, to)
	fmt.Fprintf(b, "Highest rate with every span exported, nothing dropped or lost: **%.0f spans/s**", s.Sustained)
	if s.limitedByFixture() {
		b.WriteString(" (no step lost anything: the traced process, slowed by its own uprobe traps, could not go faster, so the agent's limit is above this)")
	}
	b.WriteString(".\n\nA span lost in the ring buffer costs one or two events; spans - exported = dropped + the spans of the lost events. Agent CPU is all its threads' time on a CPU (schedstat) from the start of the step until it has drained; *RSS* is resident memory at the end of the load, *peak RSS* the most ever resident, attaching (DWARF, symbols, kernel objects) included.\n\n")
	fmt.Fprintf(b, "| target spans/s | achieved spans/s | spans | exported | dropped (queue full) | lost events (ring buffer) | agent CPU %% | agent CPU us/span | agent RSS MiB | agent peak RSS MiB | record B/span |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, st := range s.Steps {
		cpu := 0.0
		if st.Duration > 0 {
			cpu = 100 * st.CPU.Seconds() / st.Duration.Seconds()
		}
		cpuPerSpan := 0.0
		if st.Spans > 0 {
			cpuPerSpan = us(st.CPU) / float64(st.Spans)
		}
		fmt.Fprintf(b, "| %.0f | %.0f | %d | %d | %d | %d | %.0f | %.1f | %.1f | %.1f | %s |\n", st.Rate, st.Achieved, st.Spans, st.Exported, st.Dropped, st.Lost, cpu, cpuPerSpan,
			float64(st.RSS)/(1<<20), float64(st.PeakRSS)/(1<<20), perSpan(float64(st.RecordBytes), st.Spans, "%.0f"))
	}
	b.WriteString("\n")
}

// stressRates are the span rates asked of the fixture, each for
// stressStep; shortStressRates in a short run.
var (
	stressRates      = []float64{5000, 10000, 20000, 40000, 80000}
	shortStressRates = []float64{5000, 20000}
)

const stressStep = 2 * time.Second

// stress feeds a fresh agent each rate of stressRates from the spanloop
// fixture and reads what reached the sink and what the agent counted.
func stress(ctx context.Context, p params, bins binaries) (*StressResult, error) {
	sk, err := startSink()
	if err != nil {
		return nil, err
	}
	defer sk.close()
	res := &StressResult{}
	endpoint := sk.endpoint()
	col, err := startCollector(ctx, p, endpoint)
	if err != nil {
		logf("stress without a collector, straight to the sink: %v", err)
	} else {
		defer col.stop()
		endpoint, res.Collector = col.endpoint, true
	}
	cmd := exec.Command(bins.traced)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the stress fixture: %w", err)
	}
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	out := bufio.NewScanner(stdout)
	if !out.Scan() || out.Text() != "ready" {
		return nil, fmt.Errorf("stress fixture did not start: %q", out.Text())
	}
	logs := filepath.Join(p.out, "logs")
	cfg, err := writeAgentConfig(logs, endpoint, filepath.Join(p.repo, "bench", "testdata", "spanloop", "probes.yaml"),
		setup{sampling: "always_on", placement: "stress"})
	if err != nil {
		return nil, err
	}
	rates := stressRates
	if p.short {
		rates = shortStressRates
	}
	for _, rate := range rates {
		st, err := stressOne(ctx, bins, logs, cfg, cmd.Process.Pid, rate, stdin, out, sk)
		if err != nil {
			return nil, err
		}
		res.Steps = append(res.Steps, st)
		if st.complete() && st.Achieved > res.Sustained {
			res.Sustained = st.Achieved
		}
	}
	return res, nil
}

func stressOne(ctx context.Context, bins binaries, logs, cfg string, pid int, rate float64, stdin interface{ Write([]byte) (int, error) }, out *bufio.Scanner, sk *sink) (StressStep, error) {
	st := StressStep{Rate: rate}
	statsPath := filepath.Join(logs, "stress-stats.json")
	_ = os.Remove(statsPath)
	sinceMap := lastMapID()
	ag, err := start(logs, fmt.Sprintf("agent-stress-%.0f", rate), bins.self, "agent", "--pid", fmt.Sprint(pid), "--config", cfg, "--stats", statsPath)
	if err != nil {
		return st, err
	}
	defer ag.stop(30 * time.Second)
	if err := ag.waitLog(ctx, `"msg":"attached"`, 60*time.Second); err != nil {
		return st, err
	}
	cpu0, err := threadsCPU(ag.pid())
	if err != nil {
		return st, err
	}
	spans0 := sk.spans.Load()
	t0 := time.Now()
	if _, err := fmt.Fprintf(stdin, "%.0f %d\n", rate, stressStep.Milliseconds()); err != nil {
		return st, fmt.Errorf("drive the stress fixture: %w", err)
	}
	if !out.Scan() {
		return st, fmt.Errorf("stress fixture: no answer")
	}
	calls, err := strconv.ParseUint(strings.TrimSpace(out.Text()), 10, 64)
	if err != nil {
		return st, fmt.Errorf("stress fixture answered %q: %w", out.Text(), err)
	}
	st.Duration = time.Since(t0)
	st.Achieved = float64(calls) / st.Duration.Seconds()
	// Resident memory at the end of the load, before draining.
	if st.RSS, err = rss(ag.pid()); err != nil {
		return st, err
	}
	// Let the agent drain the ring buffer: stopping it discards what is
	// still unread.
	waitIdle(ag.pid(), 2*time.Second)
	if st.RecordBytes, err = ringBytes(sinceMap); err != nil {
		return st, err
	}
	cpu1, err := threadsCPU(ag.pid())
	if err != nil {
		return st, err
	}
	st.CPU = cpu1 - cpu0
	if st.PeakRSS, err = peakRSS(ag.pid()); err != nil {
		return st, err
	}
	if err := ag.stop(30 * time.Second); err != nil {
		return st, fmt.Errorf("stop agent: %w", err)
	}
	data, _ := os.ReadFile(ag.log)
	c, ok := parseStopped(data)
	if !ok {
		return st, fmt.Errorf("agent log %s has no \"stopped\" line with counters", ag.log)
	}
	ts, err := readStats(statsPath)
	if err != nil {
		return st, err
	}
	for _, ps := range ts.Probes {
		st.Spans += ps.Entries
	}
	// Through the collector, the last spans arrive within its batch
	// timeout after the agent's shutdown flush.
	st.Exported = waitSpans(sk, spans0+st.Spans, time.Second, 10*time.Second) - spans0
	// The agent's "stopped" line reads the lost counter after detaching;
	// the tracer stats were read before.
	st.Dropped, st.Lost = c.Dropped, max(c.Lost, ts.Lost)
	return st, nil
}
