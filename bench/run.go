package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/routerscope/routerscope/internal/loadgen"
	"github.com/routerscope/routerscope/probes"
)

// setup is one benchmarked configuration.
type setup struct {
	name string
	// agent: run the agent with this sampling ("" for none).
	sampling string
	rate     float64
	// placement of the agent's entry uprobes: prologue or symbol.
	placement string
	// otel: send the load to the in-process OTel comparator.
	otel bool
	// noPropagation turns trace-context extraction and injection off.
	noPropagation bool
	// probes is the probe file the agent attaches (see buildSetups).
	probes string
	// agentBin runs the agent from this build of the bench instead of
	// the harness's own (--agent-before).
	agentBin string
}

// params size the run.
type params struct {
	out, repo      string
	rounds         int
	requests       [2]int // per backend latency
	concurrency    [2]int
	warmup, prefil int
	floorCalls     int
	stress         bool
	// probesRet and probesEntry are the probe files of the RET-mode and
	// entry-only setups (see buildSetups).
	probesRet, probesEntry string
	// short is the quick mode: fewer rounds, requests and setups.
	short bool
	// idle is how long the idle agent's CPU is measured.
	idle time.Duration
	// goBench runs the agent's Go benchmarks for allocations per span.
	goBench bool
	// only runs one part alone ("idle" or "stress"): the agent's own
	// figures without the latency rounds.
	only string
	// pick keeps the setups whose names it matches, and the baseline
	// (--setups; nil: all).
	pick *regexp.Regexp
	// agentBefore is another build of the bench (`go build ./bench` of an
	// earlier commit) whose agent runs as an extra always_on entry-only
	// setup, for a before/after comparison in one interleaved run.
	agentBefore string
	// probesBefore is the agent-before setup's probe file (default
	// probesEntry), for an earlier build that predates a spec key.
	probesBefore string
	// setups are the configurations of every round, the baseline first;
	// skipped names the ones left out and why.
	setups  []setup
	skipped []string
}

// backends are the fake model latencies.
var backends = [2]time.Duration{0, 15 * time.Millisecond}

func runBench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var p params
	fs.StringVar(&p.out, "out", "build/bench", "directory for the binaries, logs and report.md")
	fs.IntVar(&p.rounds, "rounds", 4, "interleaved rounds")
	fs.IntVar(&p.requests[0], "requests", 900, "measured requests per run at 0 ms backend latency")
	fs.IntVar(&p.requests[1], "requests-15ms", 360, "measured requests per run at 15 ms backend latency")
	fs.IntVar(&p.concurrency[0], "concurrency", 1, "requests in flight at 0 ms (1: added latency is added work, no queueing)")
	fs.IntVar(&p.concurrency[1], "concurrency-15ms", 4, "requests in flight at 15 ms")
	fs.IntVar(&p.warmup, "warmup", 100, "unmeasured requests at the start of each run")
	fs.IntVar(&p.prefil, "prefill", 1100, "requests sent to each fresh router first, to fill its semantic cache (1000 entries)")
	fs.IntVar(&p.floorCalls, "floor-calls", 50000, "calls per uprobe floor measurement")
	fs.BoolVar(&p.stress, "stress", true, "measure the span rate the agent sustains")
	fs.StringVar(&p.probesRet, "probes", "", "RET-mode probe file (default config/probes/semantic-router-ret.yaml when present, else semantic-router.yaml; an entry-only file gets a RET-mode twin)")
	fs.StringVar(&p.probesEntry, "probes-entry-only", "", "entry-only probe file, with `end: next` probes (default config/probes/semantic-router.yaml)")
	fs.BoolVar(&p.short, "short", false, "quick run: 2 rounds, fewer requests, no placement or propagation variants, a shorter stress")
	fs.DurationVar(&p.idle, "idle", 10*time.Second, "how long to measure the CPU of an attached agent with no requests")
	fs.BoolVar(&p.goBench, "go-bench", true, "run the agent's Go benchmarks (allocations per span)")
	fs.StringVar(&p.only, "only", "", "run one part alone: idle (an attached agent's CPU with no requests) or stress (the span rate, CPU and RSS into the collector)")
	pick := fs.String("setups", "", "run only the setups whose names match this regular expression, and the router alone (e.g. 'entry-only|propagation|SDK')")
	fs.StringVar(&p.probesBefore, "probes-before", "", "the --agent-before setup's probe file (default: the entry-only file), for a build that predates a key the current file uses")
	fs.StringVar(&p.agentBefore, "agent-before", "", "a bench binary built from an earlier commit: its agent runs as one more always_on entry-only setup, for before/after in one interleaved run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if p.only != "" && p.only != "idle" && p.only != "stress" {
		return fmt.Errorf("--only %q: want idle or stress", p.only)
	}
	if *pick != "" {
		re, err := regexp.Compile(*pick)
		if err != nil {
			return fmt.Errorf("--setups: %w", err)
		}
		p.pick = re
	}
	if p.short {
		// Only what was not set on the command line.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		short := map[string]func(){
			"rounds": func() { p.rounds = 2 }, "requests": func() { p.requests[0] = 300 },
			"requests-15ms": func() { p.requests[1] = 120 }, "warmup": func() { p.warmup = 50 },
			"floor-calls": func() { p.floorCalls = 20000 }, "idle": func() { p.idle = 4 * time.Second },
		}
		for name, apply := range short {
			if !set[name] {
				apply()
			}
		}
	}
	if os.Geteuid() != 0 {
		return errors.New("the benchmark attaches uprobes: run it as root (sudo make bench)")
	}
	var err error
	if p.repo, err = os.Getwd(); err != nil {
		return err
	}
	if p.out, err = filepath.Abs(p.out); err != nil {
		return err
	}
	defRet, defEntry := defaultProbeFiles(p.repo)
	if p.probesRet == "" {
		p.probesRet = defRet
	}
	if p.probesEntry == "" {
		p.probesEntry = defEntry
	}
	if p.agentBefore != "" {
		if p.agentBefore, err = filepath.Abs(p.agentBefore); err != nil {
			return err
		}
		if !fileExists(p.agentBefore) {
			return fmt.Errorf("--agent-before %s: no such file (go build -o it ./bench at the earlier commit)", p.agentBefore)
		}
	}
	if p.probesRet, err = filepath.Abs(p.probesRet); err != nil {
		return err
	}
	if p.probesEntry, err = filepath.Abs(p.probesEntry); err != nil {
		return err
	}
	if p.probesBefore == "" {
		p.probesBefore = p.probesEntry
	} else if p.probesBefore, err = filepath.Abs(p.probesBefore); err != nil {
		return err
	}
	if err := os.MkdirAll(p.out, 0o755); err != nil {
		return err
	}
	if p.setups, p.skipped, err = buildSetups(p); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	started := time.Now()
	rep, err := bench(ctx, p)
	if err != nil {
		return err
	}
	rep.Duration = time.Since(started)
	md := render(rep)
	path := filepath.Join(p.out, "report.md")
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	fmt.Print(md)
	fmt.Fprintf(os.Stderr, "report written to %s\n", path)
	return nil
}

// binaries are the built executables.
type binaries struct {
	router, routerOTel, fakellm, floor, traced, self string
}

func build(p params) (binaries, error) {
	dir := filepath.Join(p.out, "bin")
	b := binaries{
		router: filepath.Join(dir, "router"), routerOTel: filepath.Join(dir, "router-otel"),
		fakellm: filepath.Join(dir, "fakellm"), floor: filepath.Join(dir, "floor"),
		traced: filepath.Join(dir, "spanloop"), self: filepath.Join(dir, "bench"),
	}
	for _, t := range []struct{ out, pkg string }{
		{b.router, "./cmd/router"}, {b.routerOTel, "./cmd/router-otel"}, {b.fakellm, "./cmd/fakellm"},
		{b.floor, "./bench/testdata/floor"}, {b.traced, "./bench/testdata/spanloop"}, {b.self, "./bench"},
	} {
		cmd := exec.Command("go", "build", "-o", t.out, t.pkg)
		cmd.Dir = p.repo
		if out, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("go build %s: %w\n%s", t.pkg, err, out)
		}
	}
	return b, nil
}

// bench builds, runs every measurement and returns the report's data.
func bench(ctx context.Context, p params) (*Report, error) {
	if err := os.MkdirAll(filepath.Join(p.out, "logs"), 0o755); err != nil {
		return nil, err
	}
	logf("building binaries")
	bins, err := build(p)
	if err != nil {
		return nil, err
	}
	rep := newReport(p)
	if p.only != "" {
		return rep, benchOnly(ctx, p, bins, rep)
	}
	logf("uprobe floor: %d calls x %d rounds", p.floorCalls, 5)
	if rep.Floor, err = measureFloor(bins.floor, p.floorCalls, 5); err != nil {
		return nil, err
	}
	stats, err := enableBPFStats()
	if err != nil {
		return nil, err
	}
	defer stats.Close()
	for i, lat := range backends {
		blk, err := benchBackend(ctx, p, bins, i, lat, rep)
		if err != nil {
			return nil, err
		}
		rep.Blocks = append(rep.Blocks, blk)
	}
	if p.stress {
		logf("agent stress")
		if rep.Stress, err = stress(ctx, p, bins); err != nil {
			return nil, err
		}
	}
	if p.goBench {
		logf("agent Go benchmarks")
		if rep.GoBench, err = runGoBench(ctx, p.repo, p.short); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// benchOnly runs the one part p.only names.
func benchOnly(ctx context.Context, p params, bins binaries, rep *Report) error {
	var err error
	switch p.only {
	case "stress":
		logf("agent stress")
		rep.Stress, err = stress(ctx, p, bins)
	case "idle":
		srv, serr := startServers(p, bins, 0)
		defer srv.stop()
		if serr != nil {
			return serr
		}
		s := idleSetup(p.setups)
		logf("idle agent (%s): %v", s.name, p.idle)
		if rep.Idle, rep.IdleDiscovery, err = measureIdleModes(ctx, p, bins, srv, s, p.idle); err != nil {
			err = fmt.Errorf("idle agent: %w", err)
		}
	}
	return err
}

// logf prints progress on stderr; the report goes to stdout.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench %s: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// writeAgentConfig writes an agent config exporting to endpoint.
func writeAgentConfig(dir, endpoint, probeFile string, s setup) (string, error) {
	sampling := fmt.Sprintf("{type: %q}", s.sampling)
	if s.sampling == "probabilistic" {
		sampling = fmt.Sprintf("{type: probabilistic, rate: %g}", s.rate)
	}
	cfg := fmt.Sprintf(`observability:
  tracing:
    enabled: true
    provider: opentelemetry
    exporter: {type: otlp, endpoint: %q, insecure: true}
    sampling: %s
    resource: {service_name: vllm-semantic-router, service_version: v0.1.0, deployment_environment: bench}
routerscope:
  probes: [%q]
  export: {queue_size: 2048, max_batch_size: 512, batch_timeout: 5s, shutdown_timeout: 10s}
  log_format: json
`, endpoint, sampling, probeFile)
	path := filepath.Join(dir, fmt.Sprintf("agent-%s-%s-%s.yaml", s.sampling, s.placement, strings.TrimSuffix(filepath.Base(probeFile), ".yaml")))
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

// readStats reads the tracer counters the agent wrote at detach.
func readStats(path string) (probes.Stats, error) {
	var st probes.Stats
	data, err := os.ReadFile(path)
	if err != nil {
		return st, fmt.Errorf("read the agent's tracer stats: %w", err)
	}
	return st, json.Unmarshal(data, &st)
}

// loaded is one run's load.
type loaded struct {
	res loadgen.Result
	// warm is the warm-up's wall time.
	warm time.Duration
	// serverCPU is the server's CPU time during the measured requests.
	serverCPU time.Duration
}

// load sends warmup then measured requests, reading the CPU time of the
// server process serverPID (0: none) around the measured ones.
func load(ctx context.Context, url string, warmup, requests, conc int, seed uint64, serverPID int) (loaded, error) {
	var l loaded
	mix, err := loadgen.NewMix(loadgen.DefaultShares(), seed)
	if err != nil {
		return l, err
	}
	if warmup > 0 {
		w, err := loadgen.Run(ctx, loadgen.Config{URL: url, Requests: warmup, Concurrency: conc, Mix: mix})
		if err != nil {
			return l, err
		}
		l.warm = w.Elapsed
	}
	var cpu0 time.Duration
	if serverPID != 0 {
		if cpu0, err = threadsCPU(serverPID); err != nil {
			return l, err
		}
	}
	if l.res, err = loadgen.Run(ctx, loadgen.Config{URL: url, Requests: requests, Concurrency: conc, Mix: mix}); err != nil {
		return l, err
	}
	if serverPID != 0 {
		cpu1, err := threadsCPU(serverPID)
		if err != nil {
			return l, err
		}
		l.serverCPU = cpu1 - cpu0
	}
	return l, nil
}
