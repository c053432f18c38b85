package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Report is everything the benchmark measured.
type Report struct {
	Date      time.Time
	CPU       string
	Cores     int
	Kernel    string
	GoVersion string
	Rounds    int
	Warmup    int
	Duration  time.Duration
	Floor     Floor
	Blocks    []Block
	Stress    *StressResult
	// Short is set for a quick run (--short).
	Short bool
	// Skipped names the setups left out and why.
	Skipped []string
	// Idle is the attached agent's CPU with no requests.
	Idle *IdleResult
	// IdleDiscovery is the idle agent in discovery mode, woken by execs
	// and polling.
	IdleDiscovery []*IdleResult
	// GoBench are the agent's Go benchmarks of its hot path.
	GoBench []GoBenchLine
}

// Block is every setup at one backend latency; Rows[0] is the baseline.
type Block struct {
	Backend     time.Duration
	Requests    int // measured per run
	Concurrency int
	Rows        []Row
}

// Row is one setup's measured requests over all rounds.
type Row struct {
	Name           string
	P50, P99, Mean time.Duration
	// RoundP50 is the p50 of each round, in the order run, to show the
	// noise between rounds.
	RoundP50 []time.Duration
	// RoundP99 is the p99 of each round.
	RoundP99 []time.Duration
	// ServerCPU is the serving process's CPU time (all threads) per
	// measured request, RoundCPU the same per round. The kernel's uprobe
	// handling and the eBPF programs run in the traced process's context,
	// so they show here; other processes' load barely does.
	ServerCPU                   time.Duration
	RoundCPU                    []time.Duration
	Throughput                  float64
	Requests, Errors, CacheHits int
	// Agent is set for the agent setups.
	Agent *AgentRow
	// SpansExported reached the sink during LoadTime (agent and
	// comparator setups).
	SpansExported uint64
	LoadTime      time.Duration
}

// AgentRow is what the agent and its kernel counters showed.
type AgentRow struct {
	// Attached is false when the sampling attaches nothing (always_off).
	Attached bool
	// Requests sent while attached (warm-up included), the divisor of the
	// per-request figures below.
	Requests int
	// CPU is the agent's user+system time while the load ran.
	CPU     time.Duration
	PeakRSS uint64
	// Uprobe hits by kind: entries on emulated and on single-stepped
	// instructions, and RETs (single-stepped).
	EntryEmulated, EntryStepped, Returns uint64
	// BPF is the capture programs' own run time and runs (kernel
	// bpf_stats) during the load.
	BPF progRun
	// Spans opened in the kernel (sampled or not).
	Spans uint64
	// Durations are the exported spans' durations by span name (what
	// the sink received during the runs).
	Durations map[string]durations
	// RecordBytes is what the records took in the ring buffer (its
	// producer position: headers and padding included).
	RecordBytes uint64
	Counters    agentCounters
	// Detach sums the time Tracer.Close took over Runs runs.
	Detach time.Duration
	Runs   int
}

func (c *agentCounters) add(o agentCounters) {
	c.Finished += o.Finished
	c.Exported += o.Exported
	c.ExportFailed += o.ExportFailed
	c.Dropped += o.Dropped
	c.Lost += o.Lost
	c.Expired += o.Expired
}

// newReport fills the machine description.
func newReport(p params) *Report {
	r := &Report{Date: time.Now().UTC(), Cores: runtime.NumCPU(), GoVersion: runtime.Version(), Rounds: p.rounds, Warmup: p.warmup,
		Short: p.short, Skipped: p.skipped}
	r.CPU = cpuModel()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		r.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	return r
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// perSpan divides an amount by spans, "-" when there are none.
func perSpan(v float64, spans uint64, format string) string {
	if spans == 0 {
		return "-"
	}
	return fmt.Sprintf(format, v/float64(spans))
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Nanoseconds())/1e6) }

func signed(v float64) string { return fmt.Sprintf("%+.0f", v) }

// perReq divides a count by requests.
func perReq(n uint64, reqs int) float64 {
	if reqs == 0 {
		return 0
	}
	return float64(n) / float64(reqs)
}

// floorPerRequestUs is the bare kernel cost of an agent row's uprobe hits
// per request, from the floor measured with the no-op program.
func floorPerRequestUs(a *AgentRow, fl Floor) float64 {
	ns := perReq(a.EntryEmulated, a.Requests)*fl.EmulatedNs +
		perReq(a.EntryStepped, a.Requests)*fl.SteppedNs +
		perReq(a.Returns, a.Requests)*fl.RetNs
	return ns / 1e3
}

// pairedMedian is the median over rounds of a[r] - b[r], over the rounds
// both have: differences within a round cancel what the machine did then.
func pairedMedian(a, b []time.Duration) time.Duration {
	n := min(len(a), len(b))
	if n == 0 {
		return 0
	}
	d := make([]float64, n)
	for r := range n {
		d[r] = float64(a[r] - b[r])
	}
	return time.Duration(median(d))
}

// render writes the report as Markdown.
func render(r *Report) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# routerscope overhead benchmark\n\n")
	w("| date | machine | kernel | Go | rounds | run time |\n|---|---|---|---|---|---|\n")
	w("| %s | %s, %d cores | %s | %s | %d (interleaved) | %s |\n\n",
		r.Date.Format("2006-01-02 15:04 UTC"), r.CPU, r.Cores, r.Kernel, r.GoVersion, r.Rounds, r.Duration.Round(time.Second))
	if r.Short {
		w("Short run (--short): fewer rounds and requests, no placement or propagation variants; noisier than the full run.\n\n")
	}
	for _, s := range r.Skipped {
		w("Setup not run: %s.\n\n", s)
	}
	renderTargets(&b, r)

	for _, blk := range r.Blocks {
		if len(blk.Rows) == 0 {
			continue
		}
		base := blk.Rows[0]
		w("## Fake model latency %v: %d measured requests per run x %d rounds, concurrency %d, %d warm-up requests per run\n\n",
			blk.Backend, blk.Requests, r.Rounds, blk.Concurrency, r.Warmup)
		w("| setup | p50 ms | p99 ms | mean ms | req/s | added p50 us | p50 overhead | added p99 us | added mean us | server CPU us/req | added server CPU us/req | p50 per round ms | errors | cache hits |\n")
		w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for i, row := range blk.Rows {
			addP50, addP99, addMean, pct, addCPU := "-", "-", "-", "-", "-"
			if i > 0 {
				d := pairedMedian(row.RoundP50, base.RoundP50)
				addP50, addMean = signed(us(d)), signed(us(row.Mean-base.Mean))
				if len(row.RoundP99) > 0 {
					addP99 = signed(us(pairedMedian(row.RoundP99, base.RoundP99)))
				} else {
					addP99 = signed(us(row.P99 - base.P99))
				}
				addCPU = signed(us(pairedMedian(row.RoundCPU, base.RoundCPU)))
				if base.P50 > 0 {
					pct = fmt.Sprintf("%+.2f%%", 100*float64(d)/float64(base.P50))
				}
			}
			rounds := make([]string, len(row.RoundP50))
			for k, d := range row.RoundP50 {
				rounds[k] = ms(d)
			}
			w("| %s | %s | %s | %s | %.0f | %s | %s | %s | %s | %.0f | %s | %s | %d | %d |\n", row.Name, ms(row.P50), ms(row.P99), ms(row.Mean),
				row.Throughput, addP50, pct, addP99, addMean, us(row.ServerCPU), addCPU, strings.Join(rounds, " "), row.Errors, row.CacheHits)
		}
		w("\n")
		w("| setup | spans/req | entry hits/req emulated | entry single-stepped | RET hits/req | floor us/req | eBPF programs us/req | eBPF us/hit | added p50 us | added server CPU us/req | ratio added p50/floor | ratio added CPU/floor | server CPU us per span | agent CPU us/req | agent CPU us/span | record B/span | agent peak RSS MiB | spans/s exported | dropped | lost events | detach s |\n")
		w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, row := range blk.Rows[1:] {
			added := us(pairedMedian(row.RoundP50, base.RoundP50))
			addedCPU := us(pairedMedian(row.RoundCPU, base.RoundCPU))
			spansPerSec := "-"
			if row.LoadTime > 0 {
				spansPerSec = fmt.Sprintf("%.0f", float64(row.SpansExported)/row.LoadTime.Seconds())
			}
			a := row.Agent
			switch {
			case a == nil:
				w("| %s | - | 0 | 0 | 0 | 0 | 0 | - | %s | %s | - | - | - | - | - | - | - | %s | - | - | - |\n", row.Name, signed(added), signed(addedCPU), spansPerSec)
			case !a.Attached:
				w("| %s | 0 | 0 | 0 | 0 | 0 | 0 | - | %s | %s | - | - | - | 0 (attaches nothing) | - | - | - | 0 | 0 | 0 | - |\n", row.Name, signed(added), signed(addedCPU))
			default:
				floor := floorPerRequestUs(a, r.Floor)
				ratio, ratioCPU, serverPerSpan := "-", "-", "-"
				if floor > 0 {
					ratio = fmt.Sprintf("%.2f", added/floor)
					ratioCPU = fmt.Sprintf("%.2f", addedCPU/floor)
				}
				if sp := perReq(a.Spans, a.Requests); sp > 0 {
					serverPerSpan = fmt.Sprintf("%.1f", addedCPU/sp)
				}
				perHit := "-"
				if a.BPF.Runs > 0 {
					perHit = fmt.Sprintf("%.2f", us(a.BPF.Runtime)/float64(a.BPF.Runs))
				}
				recordB := "n/a"
				if a.RecordBytes > 0 {
					recordB = perSpan(float64(a.RecordBytes), a.Counters.Finished, "%.0f")
				}
				w("| %s | %.2f | %.2f | %.2f | %.2f | %.0f | %.0f | %s | %s | %s | %s | %s | %s | %.0f | %s | %s | %.1f | %s | %d | %d | %.1f |\n", row.Name,
					perReq(a.Spans, a.Requests), perReq(a.EntryEmulated, a.Requests), perReq(a.EntryStepped, a.Requests), perReq(a.Returns, a.Requests),
					floor, us(a.BPF.Runtime)/float64(max(a.Requests, 1)), perHit, signed(added), signed(addedCPU), ratio, ratioCPU, serverPerSpan,
					us(a.CPU)/float64(max(a.Requests, 1)), perSpan(us(a.CPU), a.Counters.Finished, "%.1f"), recordB, float64(a.PeakRSS)/(1<<20),
					spansPerSec, a.Counters.Dropped, a.Counters.Lost, a.Detach.Seconds()/float64(max(a.Runs, 1)))
			}
		}
		w("\n")
	}

	renderStages(&b, r)

	fl := r.Floor
	w("## Bare uprobe cost (no-op program, %d calls x %d rounds, median)\n\n", fl.Calls, fl.Rounds)
	w("| probed instruction | kernel handling | added ns per hit |\n|---|---|---|\n")
	w("| none (call of the fixture function) | - | %.0f (baseline call) |\n", fl.BaselineNs)
	w("| PUSH BP after the stack check | emulated | %.0f |\n", fl.EmulatedNs)
	w("| CMP SP, 16(R14) at the symbol | single-stepped | %.0f |\n", fl.SteppedNs)
	w("| RET | single-stepped | %.0f |\n\n", fl.RetNs)

	if s := r.Stress; s != nil {
		renderStress(&b, s)
	}
	if r.Idle != nil {
		renderIdle(&b, r.Idle, r.IdleDiscovery)
	}
	if len(r.GoBench) > 0 {
		renderGoBench(&b, r.GoBench)
	}
	w("## How to read this\n\n")
	w("- *added p50* is the median over rounds of (the setup's p50 - the router alone's p50 in the same round); *added mean* compares the pooled means. The per-round p50s show the machine's noise: latency differences smaller than their spread are not measured effects.\n")
	w("- *server CPU* is the serving process's CPU time (all threads, /proc/PID/task/*/schedstat) per measured request; *added* is the median over rounds of the per-round difference with the router alone. The traps and the eBPF programs run in the router's context, so this is the agent's cost inside the router, less disturbed by the other processes than latency; on a VM it still moves when the host preempts a vCPU, and always_off (which attaches nothing) shows by how much. The agent's own CPU is separate.\n")
	w("- the machine's cores are shared by the load generator, the router, the fake model server and the agent: the agent's CPU per request competes with the router's, which is part of the added time beyond the floor and the eBPF programs.\n")
	w("- *floor us/req* is hits per request x the bare cost of their kind above; the *ratios* divide the added p50 and the added server CPU by it (1.0: the agent adds nothing beyond the kernel traps).\n")
	w("- *eBPF programs us/req* is the agent's programs' own run time in the router (kernel bpf_stats, enabled for the agent runs): the uprobe programs and the injector's sk_msg and sock_ops programs, inside the added time but not in the floor; *eBPF us/hit* divides it by the programs' runs.\n")
	w("- *RET mode* ends every span at its function's RETs (each RET hit is single-stepped); *entry-only* uses the probe file's `end: next` probes, which end where their next sibling starts or their parent ends, and the root's `end_at`, which ends it at the entry of net/http's finishRequest after serveChat returned, so no probe keeps a RET uprobe; the stage durations then run to the next stage's start instead of the stage's own return.\n")
	w("- *agent CPU us/span* divides the agent's CPU during the load by the spans it finished; *record B/span* is the ring buffer's producer position at the end of the run (every byte the kernel reserved, 8-byte record headers and padding included) per finished span.\n")
	w("- uprobe hits come from the kernel counters: an entry hit per span opened and per call an unsampled trace passed over, a RET hit per span closed, RET without a span and call passed over of the probes that have RET uprobes (`end: next` probes have none), and an entry hit of its kind per call of a probe's `end_at` function (one per HTTP/1 request for the shipped root); the uprobes on runtime.newproc1 (goroutine hand-off) and those of trace-context propagation (extract and inject, on in probes.DefaultOptions) are not counted, but their cost is in the added figures.\n")
	w("- *naive placement* puts the entry uprobe on the symbol's first instruction (the stack check's CMP, single-stepped) instead of the PUSH after it (emulated).\n")
	w("- *detach s* is the mean time the capture engine took to detach its uprobes when the agent stopped.\n")
	w("- the agent runs as `bench agent`: package agent's Run with the capture engine, as `routerscope run` does, plus a switch for the entry placement and a dump of the kernel counters at detach.\n")
	w("- agent CPU is the time of all its threads on a CPU (schedstat) during the load; peak RSS is VmHWM (attaching included).\n")
	w("- the OTel comparator wraps the router's http.Handler: a root span around each request and the stage spans that ran, with the probe file's names and attribute keys, started and ended inside the request after the handler returns (their timing is not the stages', their cost is); batch span processor with the agent's settings, OTLP gRPC to the same kind of sink.\n")
	return b.String()
}
