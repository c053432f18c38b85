package config

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"time"

	"gopkg.in/yaml.v3"

	sy "github.com/routerscope/routerscope/internal/strictyaml"

	"github.com/routerscope/routerscope/internal/readlimit"
	"github.com/routerscope/routerscope/probes"
)

// Allowed values of the guide's enumerated keys, in the order error messages
// list them.
var (
	exporterTypes = []string{ExporterStdout, ExporterOTLP, ExporterNone}
	samplingTypes = []string{SamplingAlwaysOn, SamplingAlwaysOff, SamplingProbabilistic}
	logLevels     = []string{"debug", "info", "warn", "error"}
	logFormats    = []string{LogFormatConsole, LogFormatJSON}
)

// Exporter types, sampling types and log formats accepted in the config.
const (
	ExporterStdout = "stdout"
	ExporterOTLP   = "otlp"
	// ExporterNone exports nothing and attaches nothing
	// (OTEL_TRACES_EXPORTER=none).
	ExporterNone          = "none"
	SamplingAlwaysOn      = "always_on"
	SamplingAlwaysOff     = "always_off"
	SamplingProbabilistic = "probabilistic"
	ProviderOpenTelemetry = "opentelemetry"
	LogFormatConsole      = "console"
	LogFormatJSON         = "json"
	// DefaultServiceName is the guide's service name, used when the config
	// names none.
	DefaultServiceName = "vllm-semantic-router"
)

// Stdout formats (observability.tracing.exporter.format): the SDK's own
// JSON (the default) or the shape of the guide's "Console Output" example.
const (
	StdoutFormatSDK   = "sdk"
	StdoutFormatGuide = "guide"
)

// stdoutFormats are the accepted formats, in error-message order.
var stdoutFormats = []string{StdoutFormatSDK, StdoutFormatGuide}

// Bounds and default of exporter.reconnect_backoff.
const (
	// DefaultReconnectBackoff keeps the loss after an outage to a few
	// seconds while costing at most one connection attempt per 5 s while
	// the collector is down.
	DefaultReconnectBackoff = 5 * time.Second
	// MinReconnectBackoff keeps a down collector from being dialled in a
	// tight loop.
	MinReconnectBackoff = 100 * time.Millisecond
	// MaxReconnectBackoff is gRPC's own default ceiling (120 s) rounded
	// up: beyond it the setting is pointless.
	MaxReconnectBackoff = 5 * time.Minute
)

// ErrConfig marks every configuration error, so callers can tell a bad
// config (exit code 2 territory) from a runtime failure.
var ErrConfig = errors.New("invalid configuration")

// Config is the agent's whole configuration: the guide's
// observability.tracing block and the agent's own routerscope section.
type Config struct {
	// Tracing is observability.tracing, with the guide's keys and meanings.
	Tracing Tracing
	// Agent is the top-level routerscope section.
	Agent Agent
	// Path is the file the config was read from; empty for defaults.
	Path string
}

// Tracing is the guide's observability.tracing block.
type Tracing struct {
	// Enabled: false attaches nothing. When a file has an
	// observability.tracing block without the key, tracing is off, as in
	// the router; with no block at all the agent's defaults (on) apply.
	Enabled  bool
	Provider string
	Exporter Exporter
	Sampling Sampling
	Resource Resource
}

// Exporter is observability.tracing.exporter, plus the agent's extensions
// headers, timeout and ca_file.
type Exporter struct {
	Type string
	// Endpoint is host:port, or a URL (http:// means no TLS; for
	// OTLP/HTTP its path is the traces path, /v1/traces when absent).
	Endpoint string
	// Protocol is grpc (empty means grpc) or http/protobuf.
	Protocol string
	// Format is the stdout exporter's: sdk (empty means sdk), the SDK's
	// own JSON, or guide, the guide's console example.
	Format string
	// Insecure sends OTLP without TLS; false uses TLS with the system roots,
	// or with CAFile when set.
	Insecure bool
	Headers  map[string]string
	// Timeout bounds one export call (the SDK retries within it); zero
	// means the SDK's default.
	Timeout time.Duration
	CAFile  string
	// ReconnectBackoff is the longest wait between two attempts to
	// reconnect to the collector (exporter.reconnect_backoff): export
	// resumes within about this long (plus 20% jitter) after an outage of
	// any length. gRPC's default grows to 120 s.
	ReconnectBackoff time.Duration
}

// Sampling is observability.tracing.sampling.
type Sampling struct {
	Type string
	// Rate is the fraction of traces kept by probabilistic sampling.
	Rate float64
}

// Resource is observability.tracing.resource.
type Resource struct {
	ServiceName           string
	ServiceVersion        string
	DeploymentEnvironment string
	// Attributes are further resource attributes, from
	// OTEL_RESOURCE_ATTRIBUTES.
	Attributes map[string]string
}

// Agent is the routerscope section: what to trace and how to run.
type Agent struct {
	Targets []Target
	// Probes are probe spec files; relative paths are relative to the
	// config file's directory.
	Probes []string
	Export ExportSettings
	// MaxSpanAge ends a span whose return event never came (lost) as
	// failed after this long.
	MaxSpanAge time.Duration
	LogLevel   string
	LogFormat  string
	// Discovery finds processes by rules; without rules only Targets are
	// traced.
	Discovery Discovery
	// Metrics is routerscope.metrics: the self-observability endpoint.
	Metrics Metrics
	// WatchInterval is how often the config file (and the probe files)
	// are checked for changes, which are then reloaded as on SIGHUP; zero
	// turns the watch off.
	WatchInterval time.Duration
	// Propagation is routerscope.propagation: W3C trace context in (extract)
	// and out (inject), both on by default. Turning them off saves their
	// uprobes (a RET hit per HTTP header line) and the socket programs.
	Propagation Propagation
	// Kernel is routerscope.kernel: the sizes of the one capture object
	// every traced process shares (kernel memory is set by these, not by
	// the number of processes). Read at start; a reload keeps the loaded
	// sizes.
	Kernel Kernel
}

// Kernel is routerscope.kernel.
type Kernel struct {
	// RingBufferBytes is the event ring buffer's size, a power of two; 0
	// means the default (4 MiB).
	RingBufferBytes int
	// MapEntries overrides the entry counts of kernel maps by name (see
	// probes.DefaultMapSizes and the README's table of what each costs).
	MapEntries map[string]int
}

// CaptureOptions returns the capture engine's options for k.
func (k Kernel) CaptureOptions() probes.CaptureOptions {
	o := probes.CaptureOptions{RingBufferBytes: k.RingBufferBytes}
	if len(k.MapEntries) > 0 {
		o.Maps = probes.MapSizes{}
		for name, n := range k.MapEntries {
			if n < 0 || n > math.MaxUint32 {
				n = 0 // refused by Check as out of range
			}
			o.Maps[name] = uint32(n)
		}
	}
	return o
}

// Propagation is routerscope.propagation.
type Propagation struct {
	Extract bool
	Inject  bool
}

// Metrics is routerscope.metrics.
type Metrics struct {
	// Listen is the address of the HTTP server for /metrics, /healthz and
	// /readyz; empty turns it off.
	Listen string
	// Pprof also serves Go's profiles (net/http/pprof) under /debug/pprof/
	// on that server. Off by default: a profile costs CPU while it runs
	// and shows the agent's internals to whoever reaches the port.
	Pprof bool
}

// DefaultMetricsListen is where /metrics, /healthz and /readyz are served
// by default: every interface, so the kubelet's probes and Prometheus reach
// the pod, on the port the OpenTelemetry Prometheus exporters use.
const DefaultMetricsListen = ":9464"

// Target is one process to trace: a PID, or a binary path whose running
// processes are traced.
type Target struct {
	PID    int
	Binary string
}

// ExportSettings tune the SDK's batch span processor and shutdown.
type ExportSettings struct {
	QueueSize       int
	MaxBatchSize    int
	BatchTimeout    time.Duration
	ShutdownTimeout time.Duration
}

// DefaultConfig is the configuration with no file: stdout exporter,
// always_on sampling, the guide's service name.
func DefaultConfig() Config {
	return Config{
		Tracing: Tracing{
			Enabled:  true,
			Provider: ProviderOpenTelemetry,
			Exporter: Exporter{Type: ExporterStdout, ReconnectBackoff: DefaultReconnectBackoff},
			Sampling: Sampling{Type: SamplingAlwaysOn, Rate: 1},
			Resource: Resource{ServiceName: DefaultServiceName},
		},
		Agent: Agent{
			// The SDK's own batch defaults, spelled out so the config
			// documents them.
			Export: ExportSettings{
				QueueSize:       2048,
				MaxBatchSize:    512,
				BatchTimeout:    5 * time.Second,
				ShutdownTimeout: 10 * time.Second,
			},
			MaxSpanAge: 5 * time.Minute,
			LogLevel:   "info",
			LogFormat:  LogFormatConsole,
			Discovery: Discovery{
				// Twice a second: a restarted router is attached again well
				// within the 2 s the product promises, at the cost of one
				// /proc walk (a few hundred small reads) per half second.
				Interval: 500 * time.Millisecond,
				// Where exec notifications wake discovery, it scans every
				// Interval only for Settle after an exec, and every Rescan
				// otherwise (a /proc scan is ~1.2 ms; see agent/doc.go).
				Settle:        DefaultSettle,
				Rescan:        DefaultRescan,
				RetryInterval: 10 * time.Second,
				MaxProcesses:  64,
			},
			Metrics:       Metrics{Listen: DefaultMetricsListen},
			WatchInterval: time.Second,
			Propagation:   Propagation{Extract: true, Inject: true},
		},
	}
}

// Path picks the config file: the --config flag, else the CONFIG_PATH
// environment variable (as the guide's Kubernetes example sets it), else
// none ("" means defaults).
func Path(flag string, getenv func(string) string) string {
	if flag != "" {
		return flag
	}
	return getenv("CONFIG_PATH")
}

// LoadFile reads a config file: the agent's own, or the router's
// config.yaml (whose other top-level keys are ignored).
func LoadFile(path string) (Config, error) {
	data, err := readlimit.File(path, MaxConfigBytes)
	if errors.Is(err, readlimit.ErrTooLarge) {
		return Config{}, fmt.Errorf("%w: config %s: more than %d bytes; is it the right file?", ErrConfig, path, MaxConfigBytes)
	}
	if err != nil {
		return Config{}, fmt.Errorf("read config %s: %w", path, err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	cfg.Path = path
	dir := filepath.Dir(path)
	absolute := func(paths []string) {
		for i, p := range paths {
			if !filepath.IsAbs(p) {
				paths[i] = filepath.Join(dir, p)
			}
		}
	}
	absolute(cfg.Agent.Probes)
	for _, r := range cfg.Agent.Discovery.Rules {
		absolute(r.Probes)
	}
	return cfg, nil
}

// Parse decodes and validates a config document. Unknown keys inside
// observability.tracing and routerscope are errors; other top-level keys
// belong to the router and are ignored.
func Parse(data []byte) (Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Config{}, fmt.Errorf("%w: parse YAML: %s", ErrConfig, sy.SyntaxError(data, err))
	}
	if doc.Kind == 0 || len(doc.Content) == 0 || sy.IsNull(doc.Content[0]) {
		return Config{}, fmt.Errorf("%w: the file is empty: write an observability.tracing block or a routerscope section, or pass no config to use the defaults", ErrConfig)
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return Config{}, fmt.Errorf("%w: the top level must be a mapping (key: value), got %s", ErrConfig, sy.KindName(root))
	}
	cfg := DefaultConfig()
	if obs := sy.Lookup(root, "observability"); obs != nil && !sy.IsNull(obs) {
		if obs.Kind != yaml.MappingNode {
			return Config{}, configError(sy.TypeError("observability", "a mapping", obs))
		}
		if tr := sy.Lookup(obs, "tracing"); tr != nil {
			if err := decodeTracing(tr, &cfg.Tracing); err != nil {
				return Config{}, configError(err)
			}
		}
	}
	if rs := sy.Lookup(root, "routerscope"); rs != nil {
		if err := decodeAgent(rs, &cfg.Agent); err != nil {
			return Config{}, configError(err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate checks the values' meanings (types and key names are checked
// while decoding).
func (c *Config) Validate() error {
	if err := c.Agent.Kernel.CaptureOptions().Check(); err != nil {
		return fmt.Errorf("%w: routerscope.kernel: %v", ErrConfig, err)
	}
	t := &c.Tracing
	const p = "observability.tracing."
	if t.Provider != ProviderOpenTelemetry {
		return fmt.Errorf("%w: %sprovider: unknown provider %q, allowed: %s", ErrConfig, p, t.Provider, ProviderOpenTelemetry)
	}
	if !slices.Contains(exporterTypes, t.Exporter.Type) {
		return fmt.Errorf("%w: %sexporter.type: unknown exporter type %q, allowed: %s", ErrConfig, p, t.Exporter.Type, list(exporterTypes))
	}
	if t.Exporter.Protocol != "" && !slices.Contains(protocols, t.Exporter.Protocol) {
		return fmt.Errorf("%w: %sexporter.protocol: unknown protocol %q, allowed: %s", ErrConfig, p, t.Exporter.Protocol, list(protocols))
	}
	if t.Exporter.Format != "" && !slices.Contains(stdoutFormats, t.Exporter.Format) {
		return fmt.Errorf("%w: %sexporter.format: unknown stdout format %q, allowed: %s", ErrConfig, p, t.Exporter.Format, list(stdoutFormats))
	}
	if t.Exporter.Type == ExporterOTLP && t.Exporter.Endpoint == "" {
		return fmt.Errorf("%w: %sexporter.endpoint: required when exporter.type is otlp, e.g. \"localhost:4317\"", ErrConfig, p)
	}
	if t.Exporter.Type == ExporterOTLP {
		if err := checkEndpoint(t.Exporter); err != nil {
			return err
		}
	}
	if t.Exporter.CAFile != "" && t.Exporter.Insecure {
		return fmt.Errorf("%w: %sexporter.ca_file is set but exporter.insecure is true: set insecure: false to use TLS, or drop ca_file", ErrConfig, p)
	}
	if t.Exporter.Timeout < 0 {
		return fmt.Errorf("%w: %sexporter.timeout: must be positive, e.g. \"10s\"", ErrConfig, p)
	}
	if b := t.Exporter.ReconnectBackoff; b != 0 && (b < MinReconnectBackoff || b > MaxReconnectBackoff) {
		return fmt.Errorf("%w: %sexporter.reconnect_backoff: %v is outside %v..%v", ErrConfig, p, b, MinReconnectBackoff, MaxReconnectBackoff)
	}
	if !slices.Contains(samplingTypes, t.Sampling.Type) {
		return fmt.Errorf("%w: %ssampling.type: unknown sampling type %q, allowed: %s", ErrConfig, p, t.Sampling.Type, list(samplingTypes))
	}
	// Written so NaN, which compares false with everything, fails too.
	if !(t.Sampling.Rate >= 0 && t.Sampling.Rate <= 1) {
		return fmt.Errorf("%w: %ssampling.rate: %v is outside 0..1 (a fraction: 0.1 keeps 10%% of traces)", ErrConfig, p, t.Sampling.Rate)
	}
	if t.Resource.ServiceName == "" {
		return fmt.Errorf("%w: %sresource.service_name: must not be empty", ErrConfig, p)
	}
	a := &c.Agent
	const q = "routerscope."
	e := a.Export
	if e.QueueSize <= 0 || e.MaxBatchSize <= 0 {
		return fmt.Errorf("%w: %sexport.queue_size and export.max_batch_size must be positive (got %d and %d)", ErrConfig, q, e.QueueSize, e.MaxBatchSize)
	}
	if e.MaxBatchSize > e.QueueSize {
		return fmt.Errorf("%w: %sexport.max_batch_size %d is larger than export.queue_size %d: a batch is taken from the queue", ErrConfig, q, e.MaxBatchSize, e.QueueSize)
	}
	if e.BatchTimeout <= 0 || e.ShutdownTimeout <= 0 || a.MaxSpanAge <= 0 {
		return fmt.Errorf("%w: %sexport.batch_timeout, export.shutdown_timeout and max_span_age must be positive durations, e.g. \"5s\"", ErrConfig, q)
	}
	if !slices.Contains(logLevels, a.LogLevel) {
		return fmt.Errorf("%w: %slog_level: unknown level %q, allowed: %s", ErrConfig, q, a.LogLevel, list(logLevels))
	}
	if !slices.Contains(logFormats, a.LogFormat) {
		return fmt.Errorf("%w: %slog_format: unknown format %q, allowed: %s", ErrConfig, q, a.LogFormat, list(logFormats))
	}
	for i, tg := range a.Targets {
		if (tg.PID == 0) == (tg.Binary == "") {
			return fmt.Errorf("%w: %stargets[%d]: set exactly one of pid or binary", ErrConfig, q, i)
		}
		if tg.PID < 0 {
			return fmt.Errorf("%w: %stargets[%d].pid: %d is not a process id", ErrConfig, q, i, tg.PID)
		}
	}
	if err := c.checkLimits(); err != nil {
		return err
	}
	if a.WatchInterval < 0 {
		return fmt.Errorf("%w: %swatch_interval: must not be negative (\"0s\" turns the watch off)", ErrConfig, q)
	}
	return a.Discovery.validate()
}

// String names a target for logs and errors.
func (t Target) String() string {
	switch {
	case t.PID != 0 && t.Binary != "":
		return fmt.Sprintf("pid %d (%s)", t.PID, t.Binary)
	case t.PID != 0:
		return fmt.Sprintf("pid %d", t.PID)
	}
	return "binary " + t.Binary
}

// ExporterTypes lists the accepted exporter types, in the order error
// messages list them.
func ExporterTypes() []string { return slices.Clone(exporterTypes) }
