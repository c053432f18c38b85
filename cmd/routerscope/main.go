// Command routerscope is the zero-code tracing agent: it attaches eBPF
// uprobes to a running Go router and exports its stage functions as
// OpenTelemetry spans, configured with the guide's observability.tracing
// YAML. Flag parsing and wiring only; the work is in package agent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/routerscope/routerscope/agent"
	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/agent/discovery"
	"github.com/routerscope/routerscope/probes"
)

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

const helpText = `routerscope - zero-code OpenTelemetry tracing for Go LLM routers

routerscope attaches eBPF uprobes to a running router process and turns the
functions named in probe files into the spans of the vLLM Semantic Router
tracing guide (semantic_router.request.received, .classification, ...), with
the router's own trace ids, parents, exact timings and attributes. The router
needs no tracing code and no restart. Spans are exported with the OpenTelemetry
Go SDK: readable JSON on stdout, or OTLP/gRPC to Jaeger, Tempo or a collector.

Usage:
  routerscope run [--pid N | --binary PATH] [--config FILE] [--probes FILE]...
                  [--metrics-listen ADDR] [--pprof]
                  [--log-level debug|info|warn|error] [--log-format console|json]
  routerscope probes list|verify|extract ...   (see routerscope probes help)
  routerscope tree [FILE]
  routerscope version
  routerscope help | --help

tree reads spans as the stdout exporter prints them (FILE or standard input)
and draws one tree per trace with durations and attributes.

run flags:
  --pid N          trace the running process N
  --binary PATH    trace the processes running the executable PATH when
                   the agent starts
  --config FILE    YAML config: the guide's observability.tracing block and an
                   optional routerscope section; may be the router's own
                   config.yaml (its other keys are ignored). Default: the
                   CONFIG_PATH environment variable, else (with --pid) the
                   file the router was started with (its --config flag or
                   CONFIG_PATH), else built-in defaults
                   (stdout exporter, always_on sampling,
                   service_name vllm-semantic-router)
  --probes FILE    probe spec file (repeat, or separate with commas); replaces
                   routerscope.probes from the config
  --metrics-listen ADDR
                   serve Prometheus /metrics, /healthz and /readyz on ADDR
                   (default routerscope.metrics.listen, else :9464); ""
                   turns the server off
  --pprof          also serve Go profiles under /debug/pprof/ on that server
                   (routerscope.metrics.pprof; off by default), e.g.
                   go tool pprof http://ADDR/debug/pprof/profile?seconds=30
  --log-level L    debug, info (default), warn or error
  --log-format F   console (default, for humans) or json

Flags override the config file: --pid/--binary replace routerscope.targets.

Environment: the OpenTelemetry SDK's variables override the config file
(flags > OTEL_* > file > defaults): OTEL_SDK_DISABLED, OTEL_SERVICE_NAME,
OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_EXPORTER (otlp, console, none),
OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _INSECURE, _CERTIFICATE,
_TIMEOUT, _PROTOCOL (grpc or http/protobuf), OTEL_TRACES_SAMPLER (always_on,
always_off, traceidratio, parentbased_*) and OTEL_TRACES_SAMPLER_ARG,
OTEL_BSP_MAX_QUEUE_SIZE, _MAX_EXPORT_BATCH_SIZE, _SCHEDULE_DELAY,
_EXPORT_TIMEOUT. An OTLP endpoint alone selects the otlp exporter.
Logs go to standard error, so with the stdout exporter standard output carries
only the spans' JSON.

Discovery: with routerscope.discovery.rules in the config (see
config/agent.yaml), routerscope scans /proc twice a second and attaches to
every matching process as it starts (by executable path glob, process name,
command line, listening port or PID), detaches when it exits, and follows
restarts; it runs until stopped. With only --pid/--binary/targets it stops
when its targets have exited.

Reload: on SIGHUP, or when the config file or a probe file changes
(checked every routerscope.watch_interval, default 1s), the config is read
again: targets, rules, probe files and sampling take effect, attachments
that changed are redone, the others and the export pipeline keep running.
A config that does not load is refused with an error log; the running one
stays.

Sampling is decided once per trace in the kernel at the root span:
always_on keeps every request, probabilistic keeps the configured rate
(trace-id ratio), always_off or enabled: false attach nothing at all.

Privileges: attaching uprobes and loading eBPF programs needs root, or
CAP_BPF and CAP_PERFMON (plus CAP_SYS_PTRACE to read another user's
process), on Linux 5.8 or newer with BTF (/sys/kernel/btf/vmlinux).

On SIGINT or SIGTERM routerscope stops reading events, ends the spans still
open as failed, flushes the export queue within
routerscope.export.shutdown_timeout, then detaches.

Examples:
  sudo routerscope run --pid $(pgrep -n router) --probes config/probes/router.yaml
  sudo routerscope run --binary /usr/local/bin/router --config config/agent.yaml
  CONFIG_PATH=/config/config.yaml sudo -E routerscope run --pid 4242 --log-format json

Exit status: 0 on a clean stop, 1 on a runtime error, 2 on a usage or
configuration error.
`

// cli holds the process's outside world, so tests can run it in-process.
type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	newAttacher    func(config.Kernel) (captureEngine, error)
	// resolveCheck resolves a reloaded config's probes against an
	// attached process before it is applied; nil skips the check (tests
	// with a synthetic attacher).
	resolveCheck func(agent.AttachRequest) error
	// listen opens the metrics listener.
	listen func(addr string) (net.Listener, error)
	// hup delivers SIGHUP: reload the config.
	hup <-chan os.Signal
	// proc is the procfs root ("" means /proc), for tests.
	proc string
	// openExecs opens the kernel's exec notifications for discovery; nil
	// (tests) keeps discovery polling.
	openExecs func(minGap time.Duration) (agent.ExecSource, error)
}

func (c cli) procRoot() string {
	if c.proc == "" {
		return "/proc"
	}
	return c.proc
}

func main() {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	c := cli{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, newAttacher: newAttacher, resolveCheck: checkResolves, hup: hup, openExecs: openExecWatcher,
		listen: func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := c.main(ctx, os.Args[1:])
	stop()
	signal.Stop(hup)
	os.Exit(code)
}

func (c cli) main(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, helpText)
		return exitUsage
	}
	switch args[0] {
	case "help", "--help", "-help", "-h":
		fmt.Fprint(c.stdout, helpText)
		return exitOK
	case "version", "--version":
		fmt.Fprintln(c.stdout, versionString())
		return exitOK
	case "run":
		return c.run(ctx, args[1:])
	case "tree":
		return c.tree(args[1:], os.Stdin)
	case "probes":
		return c.probesCmd(args[1:])
	}
	fmt.Fprintf(c.stderr, "routerscope: unknown command %q: want run, probes, tree, version or help\n", args[0])
	return exitUsage
}

func versionString() string {
	v := "routerscope " + agent.Version
	if bi, ok := debug.ReadBuildInfo(); ok {
		v += " " + bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v += " " + s.Value
			}
		}
	}
	return v
}

// runFlags are the run command's flags.
type runFlags struct {
	pid       int
	binary    string
	config    string
	probes    listFlag
	logLevel  string
	logFormat string
	// metricsListen is set when --metrics-listen was given (even empty).
	metricsListen *string
	// pprof is set when --pprof was given.
	pprof *bool
}

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

func (c cli) usageError(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "routerscope run: "+format+"\nRun 'routerscope help' for usage.\n", args...)
	return exitUsage
}

func (c cli) run(ctx context.Context, args []string) int {
	var f runFlags
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&f.pid, "pid", 0, "")
	fs.StringVar(&f.binary, "binary", "", "")
	fs.StringVar(&f.config, "config", "", "")
	fs.Var(&f.probes, "probes", "")
	fs.StringVar(&f.logLevel, "log-level", "", "")
	fs.StringVar(&f.logFormat, "log-format", "", "")
	metricsListen := fs.String("metrics-listen", "", "")
	pprofOn := fs.Bool("pprof", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(c.stdout, helpText)
			return exitOK
		}
		return c.usageError("%v", err)
	}
	if fs.NArg() > 0 {
		return c.usageError("unexpected argument %q", fs.Arg(0))
	}
	if f.pid != 0 && f.binary != "" {
		return c.usageError("--pid and --binary are exclusive: pass one of them")
	}
	if f.pid < 0 {
		return c.usageError("--pid %d is not a process id", f.pid)
	}
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "metrics-listen":
			f.metricsListen = metricsListen
		case "pprof":
			f.pprof = pprofOn
		}
	})

	path := config.Path(f.config, c.getenv)
	source := path
	if path == "" && f.pid > 0 {
		// The guide puts observability.tracing in the router's config.yaml:
		// read the file the router was started with.
		// Only a YAML file with an observability: (or routerscope:)
		// section: any other is the router's own business.
		if p, from, ok := discovery.TargetConfigPath(c.procRoot(), f.pid); ok && discovery.HasAgentSection(p) {
			path, source = p, from
		}
	}
	cfg, err := loadConfig(path, f, c.getenv)
	if err != nil {
		if errors.As(err, new(flagError)) {
			return c.usageError("%v", flagNames(err))
		}
		fmt.Fprintf(c.stderr, "routerscope run: %v\n", err)
		if errors.Is(err, config.ErrConfig) {
			return exitUsage
		}
		return exitRuntime
	}
	if err := agent.CheckTargets(cfg); err != nil {
		return c.usageError("%v", err)
	}

	log, err := newLogger(cfg.Agent.LogLevel, cfg.Agent.LogFormat, c.stderr)
	if err != nil {
		return c.usageError("%v", err)
	}
	defer func() { _ = log.Sync() }()
	if path != "" {
		log.Info("config loaded", zap.String(agent.LogKeyConfig, source))
	}
	engine, err := c.newAttacher(cfg.Agent.Kernel)
	if err != nil {
		log.Error("start capture", agent.ErrorField(err))
		return exitRuntime
	}
	defer func() {
		// After Run: every process is detached by then.
		if err := engine.close(); err != nil {
			log.Warn("close the capture", zap.Error(err))
		}
	}()
	opts := []agent.Option{agent.WithStdout(c.stdout), agent.WithReloadSignal(c.hup), agent.WithProbeCheck(checkProbeFile)}
	if c.proc != "" {
		// The agent reads the same procfs as the target's config lookup.
		opts = append(opts, agent.WithProcRoot(c.proc))
	}
	if c.openExecs != nil && c.proc == "" {
		// Exec notifications are about this node's processes, the ones
		// /proc shows.
		opts = append(opts, agent.WithExecSource(c.openExecs))
	}
	if engine.stats != nil {
		opts = append(opts, agent.WithKernelStats(engine.stats))
	}
	if c.resolveCheck != nil {
		opts = append(opts, agent.WithResolveCheck(c.resolveCheck))
	}
	if path != "" {
		opts = append(opts, agent.WithReload(func() (config.Config, error) { return loadConfig(path, f, c.getenv) }))
	}
	if addr := cfg.Agent.Metrics.Listen; addr != "" {
		ln, err := c.listen(addr)
		if err != nil {
			log.Error("serve metrics: set routerscope.metrics.listen or --metrics-listen to a free address, or to \"\" to turn the server off",
				zap.String("listen", addr), zap.Error(err))
			return exitRuntime
		}
		log.Info("serving /metrics, /healthz and /readyz", zap.Stringer("address", ln.Addr()))
		opts = append(opts, agent.WithMetricsListener(ln))
	}
	if err := agent.Run(ctx, cfg, engine.attach, log, opts...); err != nil {
		log.Error("run", agent.ErrorField(err))
		// A probe file that does not validate is a configuration error
		// too (help: configuration errors exit 2).
		if errors.Is(err, config.ErrConfig) || errors.Is(err, probes.ErrInvalidSpec) {
			return exitUsage
		}
		return exitRuntime
	}
	return exitOK
}

// flagError marks a config that the command line's flags made invalid
// (the file, when any, was valid on its own).
type flagError struct{ error }

func (e flagError) Unwrap() error { return e.error }

// loadConfig reads the config file (or the defaults when path is empty),
// applies the OTEL_* environment over it, then the flags: flags > OTEL_* >
// file > defaults. The reload reuses it, so the environment and the flags
// keep overriding the file after a reload.
func loadConfig(path string, f runFlags, getenv func(string) string) (config.Config, error) {
	cfg := config.DefaultConfig()
	if path != "" {
		var err error
		if cfg, err = config.LoadFile(path); err != nil {
			return config.Config{}, err
		}
	}
	if err := config.ApplyEnv(&cfg, getenv); err != nil {
		return config.Config{}, err
	}
	switch {
	case f.pid != 0:
		cfg.Agent.Targets = []config.Target{{PID: f.pid}}
	case f.binary != "":
		cfg.Agent.Targets = []config.Target{{Binary: f.binary}}
	}
	if len(f.probes) > 0 {
		cfg.Agent.Probes = f.probes
	}
	if f.logLevel != "" {
		cfg.Agent.LogLevel = f.logLevel
	}
	if f.logFormat != "" {
		cfg.Agent.LogFormat = f.logFormat
	}
	if f.pprof != nil {
		cfg.Agent.Metrics.Pprof = *f.pprof
	}
	if f.metricsListen != nil {
		cfg.Agent.Metrics.Listen = *f.metricsListen
	}
	if err := cfg.Validate(); err != nil {
		return config.Config{}, flagError{err}
	}
	return cfg, nil
}

// flagNames adds the flag a config key can also be set with, so the
// message points at what the user typed.
func flagNames(err error) string {
	msg := err.Error()
	msg = strings.Replace(msg, "routerscope.log_level:", "--log-level / routerscope.log_level:", 1)
	return strings.Replace(msg, "routerscope.log_format:", "--log-format / routerscope.log_format:", 1)
}

// newLogger builds the zap logger: console for humans, JSON for machines.
func newLogger(level, format string, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch format {
	case config.LogFormatJSON:
		enc = zapcore.NewJSONEncoder(encCfg)
	case config.LogFormatConsole:
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return nil, fmt.Errorf("--log-format %q: want console or json", format)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), lvl)), nil
}

// openExecWatcher loads the exec notification program (probes.ExecWatcher)
// that wakes discovery.
func openExecWatcher(minGap time.Duration) (agent.ExecSource, error) {
	w, err := probes.NewExecWatcher(minGap)
	if err != nil {
		return nil, err
	}
	return w, nil
}
