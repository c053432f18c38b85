package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/routerscope/routerscope/internal/loadgen"
	"github.com/routerscope/routerscope/probes"
)

// servers are the processes of one backend latency.
type servers struct {
	fakellm, router, otel *proc
	routerURL, otelURL    string
	agentSink, otelSink   *sink
}

func (s *servers) stop() {
	for _, p := range []*proc{s.otel, s.router, s.fakellm} {
		if p != nil {
			_ = p.stop(30 * time.Second)
		}
	}
	for _, k := range []*sink{s.agentSink, s.otelSink} {
		if k != nil {
			k.close()
		}
	}
}

// startServers starts the fake model server with latency, the router and
// the comparator, each on a free port, and the two OTLP sinks.
func startServers(p params, bins binaries, lat time.Duration) (*servers, error) {
	s := &servers{}
	var err error
	if s.agentSink, err = startSink(); err != nil {
		return s, err
	}
	if s.otelSink, err = startSink(); err != nil {
		return s, err
	}
	logs := filepath.Join(p.out, "logs")
	tag := fmt.Sprintf("%dms", lat.Milliseconds())
	addrs := make([]string, 3)
	for i := range addrs {
		if addrs[i], err = freeAddr(); err != nil {
			return s, err
		}
	}
	config := filepath.Join(p.repo, "config", "router.yaml")
	if s.fakellm, err = start(logs, "fakellm-"+tag, bins.fakellm, "--listen", addrs[0], "--latency", lat.String()); err != nil {
		return s, err
	}
	if s.router, err = start(logs, "router-"+tag, bins.router, "--config", config, "--listen", addrs[1], "--backend", addrs[0]); err != nil {
		return s, err
	}
	if s.otel, err = start(logs, "router-otel-"+tag, bins.routerOTel, "--config", config, "--listen", addrs[2], "--backend", addrs[0], "--otlp-endpoint", s.otelSink.endpoint()); err != nil {
		return s, err
	}
	for _, a := range addrs {
		if err := waitPort(a, 30*time.Second); err != nil {
			return s, err
		}
	}
	s.routerURL, s.otelURL = "http://"+addrs[1], "http://"+addrs[2]
	return s, nil
}

// acc accumulates one setup's runs.
type acc struct {
	lat      *loadgen.Histogram
	roundP50 []time.Duration
	roundP99 []time.Duration
	// roundCPU is the server's CPU time per measured request, per round.
	roundCPU  []time.Duration
	serverCPU time.Duration
	elapsed   time.Duration
	errors    int
	cacheHit  int
	agent     *AgentRow
	spans     uint64
	loadTime  time.Duration
}

// benchBackend runs every setup, interleaved over the rounds, at one
// backend latency.
func benchBackend(ctx context.Context, p params, bins binaries, i int, lat time.Duration, rep *Report) (Block, error) {
	blk := Block{Backend: lat, Requests: p.requests[i], Concurrency: p.concurrency[i]}
	srv, err := startServers(p, bins, lat)
	defer srv.stop()
	if err != nil {
		return blk, err
	}
	funcs := map[string]*probes.Function{}
	for _, s := range p.setups {
		if s.probes == "" {
			continue
		}
		if err := openFunctions(bins.router, s.probes, funcs); err != nil {
			return blk, err
		}
	}
	seed := uint64(1000 * (i + 1))
	logf("backend %v: prefilling the semantic caches with %d requests", lat, p.prefil)
	for _, url := range []string{srv.routerURL, srv.otelURL} {
		seed++
		if _, err := load(ctx, url, 0, p.prefil, max(p.concurrency[i], 4), seed, 0); err != nil {
			return blk, fmt.Errorf("prefill %s: %w", url, err)
		}
	}
	accs := make([]acc, len(p.setups))
	for k := range accs {
		accs[k].lat = loadgen.NewHistogram(p.rounds * p.requests[i])
	}
	otelSpans0 := srv.otelSink.spans.Load()
	var otelLoad time.Duration
	order := rand.New(rand.NewPCG(uint64(i)+1, 7))
	for r := range p.rounds {
		// A new order each round (reproducible): no setup always runs
		// first, last or after the same other setup, so what a run leaves
		// behind is spread over all of them.
		for _, k := range order.Perm(len(p.setups)) {
			s := p.setups[k]
			// Let the previous run's processes finish exiting.
			time.Sleep(300 * time.Millisecond)
			seed++
			logf("backend %v round %d/%d: %s", lat, r+1, p.rounds, s.name)
			a := &accs[k]
			var l loaded
			switch {
			case s.otel:
				l, err = load(ctx, srv.otelURL, p.warmup, p.requests[i], p.concurrency[i], seed, srv.otel.pid())
				otelLoad += l.warm + l.res.Elapsed
			case s.sampling == "":
				l, err = load(ctx, srv.routerURL, p.warmup, p.requests[i], p.concurrency[i], seed, srv.router.pid())
			default:
				l, err = agentRun(ctx, p, bins, srv, funcs, s, i, seed, a)
			}
			if err != nil {
				return blk, fmt.Errorf("%s at %v: %w", s.name, lat, err)
			}
			res := l.res
			a.roundCPU = append(a.roundCPU, l.serverCPU/time.Duration(max(res.Latency.Count(), 1)))
			a.serverCPU += l.serverCPU
			a.lat.Merge(res.Latency)
			a.roundP50 = append(a.roundP50, res.Latency.Quantile(0.5))
			a.roundP99 = append(a.roundP99, res.Latency.Quantile(0.99))
			a.elapsed += res.Elapsed
			a.errors += res.Errors
			a.cacheHit += res.CacheHits
		}
	}
	if i == 0 && p.idle > 0 {
		s := idleSetup(p.setups)
		logf("idle agent (%s): %v", s.name, p.idle)
		if rep.Idle, rep.IdleDiscovery, err = measureIdleModes(ctx, p, bins, srv, s, p.idle); err != nil {
			return blk, fmt.Errorf("idle agent: %w", err)
		}
	}
	// Stopping the comparator flushes its batch processor into its sink.
	if err := srv.otel.stop(30 * time.Second); err != nil {
		return blk, err
	}
	otelSpans := srv.otelSink.spans.Load() - otelSpans0
	for k, s := range p.setups {
		a := &accs[k]
		row := Row{Name: s.name, P50: a.lat.Quantile(0.5), RoundP50: a.roundP50, RoundP99: a.roundP99, RoundCPU: a.roundCPU, P99: a.lat.Quantile(0.99), Mean: a.lat.Mean(),
			Requests: a.lat.Count(), Errors: a.errors, CacheHits: a.cacheHit, Agent: a.agent}
		if n := a.lat.Count(); n > 0 {
			row.ServerCPU = a.serverCPU / time.Duration(n)
		}
		if a.elapsed > 0 {
			row.Throughput = float64(a.lat.Count()) / a.elapsed.Seconds()
		}
		switch {
		case s.otel:
			row.SpansExported, row.LoadTime = otelSpans, otelLoad
		case a.agent != nil:
			row.SpansExported, row.LoadTime = a.spans, a.loadTime
		}
		blk.Rows = append(blk.Rows, row)
	}
	return blk, nil
}

// agentRun attaches an agent to the router, sends the load, stops the
// agent and adds its figures to a.
func agentRun(ctx context.Context, p params, bins binaries, srv *servers, funcs map[string]*probes.Function, s setup, i int, seed uint64, a *acc) (loaded, error) {
	logs := filepath.Join(p.out, "logs")
	cfg, err := writeAgentConfig(logs, srv.agentSink.endpoint(), s.probes, s)
	if err != nil {
		return loaded{}, err
	}
	statsPath := filepath.Join(logs, "tracer-stats.json")
	_ = os.Remove(statsPath)
	since, sinceMap := lastProgID(), lastMapID()
	name := fmt.Sprintf("agent-%s-%s-%dms-seed%d", s.sampling, s.placement, backends[i].Milliseconds(), seed)
	self := bins.self
	if s.agentBin != "" {
		self = s.agentBin
	}
	ag, err := start(logs, name, self, "agent", "--pid", fmt.Sprint(srv.router.pid()), "--config", cfg,
		"--placement", s.placement, "--stats", statsPath, fmt.Sprintf("--propagation=%v", !s.noPropagation))
	if err != nil {
		return loaded{}, err
	}
	defer ag.stop(30 * time.Second)
	attached := s.sampling != "always_off"
	if attached {
		if err := ag.waitLog(ctx, `"msg":"attached"`, 60*time.Second); err != nil {
			return loaded{}, err
		}
	} else if err := ag.waitLog(ctx, `"msg":"attaching nothing"`, 60*time.Second); err != nil {
		return loaded{}, err
	}
	if a.agent == nil {
		a.agent = &AgentRow{Attached: attached}
	}
	row := a.agent
	var cpu0 time.Duration
	var runs0 progRun
	if attached {
		if cpu0, err = threadsCPU(ag.pid()); err != nil {
			return loaded{}, err
		}
		if runs0, err = captureRuns(since); err != nil {
			return loaded{}, err
		}
	}
	spans0, durs0 := srv.agentSink.spans.Load(), srv.agentSink.durationsByName()
	res, err := load(ctx, srv.routerURL, p.warmup, p.requests[i], p.concurrency[i], seed, srv.router.pid())
	if err != nil {
		return res, err
	}
	if !attached {
		return res, nil
	}
	cpu1, err := threadsCPU(ag.pid())
	if err != nil {
		return res, err
	}
	runs1, err := captureRuns(since)
	if err != nil {
		return res, err
	}
	// The ring buffer goes when the agent stops: read it after draining.
	waitIdle(ag.pid(), 2*time.Second)
	ring, err := ringBytes(sinceMap)
	if err != nil {
		return res, err
	}
	rss, err := peakRSS(ag.pid())
	if err != nil {
		return res, err
	}
	if err := ag.stop(30 * time.Second); err != nil {
		return res, fmt.Errorf("stop agent: %w", err)
	}
	logData, _ := os.ReadFile(ag.log)
	row.Detach += parseDetach(logData)
	row.Runs++
	c, ok := parseStopped(logData)
	if !ok {
		return res, fmt.Errorf("agent log %s has no \"stopped\" line with counters", ag.log)
	}
	st, err := readStats(statsPath)
	if err != nil {
		return res, err
	}
	row.RecordBytes += ring
	row.Requests += p.warmup + p.requests[i]
	row.CPU += cpu1 - cpu0
	d := runs1.sub(runs0)
	row.BPF.Runtime += d.Runtime
	row.BPF.Runs += d.Runs
	row.PeakRSS = max(row.PeakRSS, rss)
	// The agent's "stopped" line reads the lost counter after detaching,
	// when the kernel map is gone; the tracer stats were read before.
	c.Lost = max(c.Lost, st.Lost)
	row.Counters.add(c)
	for _, ps := range st.Probes {
		fn := funcs[ps.Symbol]
		if fn == nil {
			return res, fmt.Errorf("tracer stats name %s, not in the router binary", ps.Symbol)
		}
		emulated := fn.EntryEmulated
		if s.placement == "symbol" && fn.EntryOffset != fn.SymbolOffset {
			// The symbol's first instruction is the stack check's
			// CMP (or LEA/MOV), which is single-stepped.
			emulated = false
		}
		// Every call traps at its entry: the spans opened and the calls an
		// unsampled trace passed over.
		if emulated {
			row.EntryEmulated += ps.Entries + ps.Skipped
		} else {
			row.EntryStepped += ps.Entries + ps.Skipped
		}
		row.Returns += retHits(ps)
		if ps.EndAtHits > 0 {
			// The end_at function's entry: a hit per call, spans or not.
			at := funcs[ps.EndAt]
			if at == nil {
				return res, fmt.Errorf("tracer stats name end_at %s, not in the router binary", ps.EndAt)
			}
			if at.EntryEmulated && (s.placement != "symbol" || at.EntryOffset == at.SymbolOffset) {
				row.EntryEmulated += ps.EndAtHits
			} else {
				row.EntryStepped += ps.EndAtHits
			}
		}
		row.Spans += ps.Entries
	}
	a.spans += srv.agentSink.spans.Load() - spans0
	if row.Durations == nil {
		row.Durations = map[string]durations{}
	}
	for name, d := range spanDurations(durs0, srv.agentSink.durationsByName()) {
		t := row.Durations[name]
		t.Count += d.Count
		t.Total += d.Total
		row.Durations[name] = t
	}
	a.loadTime += res.warm + res.res.Elapsed
	return res, nil
}

// openFunctions adds the router binary's functions probed by probeFile
// to out.
func openFunctions(path, probeFile string, out map[string]*probes.Function) error {
	bin, err := probes.OpenBinary(path)
	if err != nil {
		return err
	}
	defer bin.Close()
	spec, err := probes.LoadSpec(probeFile)
	if err != nil {
		return err
	}
	for _, pr := range spec.Probes {
		fn, err := bin.Function(pr.Symbol)
		if err != nil {
			return err
		}
		out[pr.Symbol] = fn
		if pr.EndAt != "" {
			if out[pr.EndAt], err = bin.Function(pr.EndAt); err != nil {
				return err
			}
		}
	}
	return nil
}

// idleSetup is the setup the idle agent runs: the first always_on one
// (entry-only when there is one, as shipped), else RET mode; never the
// --agent-before build's.
func idleSetup(all []setup) setup {
	var pick setup
	for _, s := range all {
		if s.sampling != "always_on" || s.placement != "prologue" || s.noPropagation || s.agentBin != "" {
			continue
		}
		if pick.name == "" || strings.Contains(s.name, "entry-only") {
			pick = s
		}
	}
	return pick
}

// retHits is how many RET uprobe hits a probe took: its closed spans, the
// RETs without an open span and the calls passed over, when it has RET
// uprobes at all (more uprobes than its entry's); an `end: next` probe has
// none, its spans close at the next sibling's start.
func retHits(ps probes.ProbeStats) uint64 {
	if ps.Uprobes-ps.EndAtUprobes <= 1 {
		return 0
	}
	return ps.Returns + ps.Unmatched + ps.Skipped
}
