package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cilium/ebpf/rlimit"
	"go.uber.org/zap"

	"github.com/routerscope/routerscope/agent"
	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/probes"
)

// runAgent is the `bench agent` subcommand: the agent (package agent's Run)
// with the capture engine as its Attacher, in its own process so its CPU
// time and peak RSS can be read from /proc. It differs from
// `routerscope run` only in two benchmark knobs: the entry placement, and
// a file receiving the kernel counters (Tracer.Stats) at detach.
func runAgent(args []string) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	pid := fs.Int("pid", 0, "process to trace")
	configPath := fs.String("config", "", "agent config file")
	placement := fs.String("placement", "prologue", "entry uprobe placement: prologue or symbol")
	statsPath := fs.String("stats", "", "write the kernel counters here as JSON at detach")
	propagation := fs.Bool("propagation", true, "W3C trace context extraction and injection (on in probes.DefaultOptions)")
	discover := fs.String("discover", "", "discovery mode: trace the processes whose executable matches this glob instead of --pid")
	execWake := fs.Bool("exec-wake", true, "with --discover: exec notifications wake discovery (as routerscope run does); false polls /proc")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.LoadFile(*configPath)
	if err != nil {
		return err
	}
	cfg.Agent.Targets = []config.Target{{PID: *pid}}
	var opts []agent.Option
	if *discover != "" {
		cfg.Agent.Targets = nil
		cfg.Agent.Discovery.Rules = []config.Rule{{Name: "router", Selector: config.Selector{Executable: *discover}}}
		if err := cfg.Validate(); err != nil {
			return err
		}
		if *execWake {
			opts = append(opts, agent.WithExecSource(func(gap time.Duration) (agent.ExecSource, error) {
				w, err := probes.NewExecWatcher(gap)
				if err != nil {
					return nil, err
				}
				return w, nil
			}))
		}
	}
	var place probes.Placement
	switch *placement {
	case "prologue":
		place = probes.PlacementPrologue
	case "symbol":
		place = probes.PlacementSymbol
	default:
		return fmt.Errorf("--placement %q: want prologue or symbol", *placement)
	}
	log, err := zap.NewProduction()
	if err != nil {
		return fmt.Errorf("create logger: %w", err)
	}
	defer func() { _ = log.Sync() }()
	// Package probes leaves this process-wide change to main (kernels
	// before 5.11 charge BPF memory to RLIMIT_MEMLOCK).
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("remove the memlock limit: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	attach := func(ctx context.Context, req agent.AttachRequest) (agent.EventSource, error) {
		return attachProbes(ctx, req, place, *propagation, *statsPath)
	}
	return agent.Run(ctx, cfg, attach, log, opts...)
}

// attachProbes resolves the request's probe files against its target and
// attaches them.
func attachProbes(ctx context.Context, req agent.AttachRequest, place probes.Placement, propagation bool, statsPath string) (agent.EventSource, error) {
	path := req.Executable
	if path == "" {
		path = req.Target.Binary
	}
	if path == "" {
		var err error
		if path, err = probes.ExePath(req.Target.PID); err != nil {
			return nil, err
		}
	}
	bin, err := probes.OpenBinary(path)
	if err != nil {
		return nil, err
	}
	defer bin.Close()
	var all []probes.Probe
	for _, f := range req.Probes {
		spec, err := probes.LoadSpec(f)
		if err != nil {
			return nil, err
		}
		all = append(all, spec.Probes...)
	}
	prog, err := probes.Resolve(bin, &probes.Spec{Probes: all, Path: req.Probes[0]})
	if err != nil {
		return nil, err
	}
	opts := probes.DefaultOptions()
	opts.Placement = place
	if !propagation {
		opts.Propagation = probes.Propagation{}
	}
	opts.SampleRatio = probes.Ratio(req.SampleRatio) // as routerscope run does

	tr, err := probes.Attach(ctx, prog, req.Target.PID, opts)
	if err != nil {
		return nil, err
	}
	return &statsSource{Tracer: tr, path: statsPath}, nil
}

// statsSource writes the tracer's counters before detaching: they live in
// kernel maps that Close frees.
type statsSource struct {
	*probes.Tracer
	path string
}

func (s *statsSource) Close() error {
	var werr error
	if s.path != "" {
		data, err := json.Marshal(s.Tracer.Stats())
		if err == nil {
			err = os.WriteFile(s.path, data, 0o644)
		}
		if err != nil {
			werr = fmt.Errorf("write tracer stats to %s: %w", s.path, err)
		}
	}
	start := time.Now()
	err := s.Tracer.Close()
	// The harness reports how long detaching takes (uprobe unregistration).
	fmt.Fprintf(os.Stderr, "{\"msg\":\"detached\",\"detach_seconds\":%.3f}\n", time.Since(start).Seconds())
	return errors.Join(err, werr)
}
