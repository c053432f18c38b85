package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/routerscope/routerscope/internal/testenv"
)

// The guide's YAML examples, copied exactly (indentation and comments
// included) into config/examples/guide: each must load unchanged.
var guideExamples = []struct {
	name string
	file string // in config/examples/guide
	want Tracing
}{
	{"basic", "basic.yaml", Tracing{Enabled: true, Provider: "opentelemetry",
		Exporter: Exporter{Type: "stdout", Endpoint: "localhost:4317", Insecure: true},
		Sampling: Sampling{Type: "always_on", Rate: 1},
		Resource: Resource{ServiceName: "vllm-semantic-router", ServiceVersion: "v0.1.0", DeploymentEnvironment: "production"}}},
	{"development", "development.yaml", Tracing{Enabled: true, Provider: "opentelemetry",
		Exporter: Exporter{Type: "stdout"},
		Sampling: Sampling{Type: "always_on", Rate: 1},
		Resource: Resource{ServiceName: "vllm-semantic-router-dev", DeploymentEnvironment: "development"}}},
	{"production", "production.yaml", Tracing{Enabled: true, Provider: "opentelemetry",
		Exporter: Exporter{Type: "otlp", Endpoint: "tempo:4317"},
		Sampling: Sampling{Type: "probabilistic", Rate: 0.1},
		Resource: Resource{ServiceName: "vllm-semantic-router", ServiceVersion: "v0.1.0", DeploymentEnvironment: "production"}}},
	{"jaeger", "jaeger.yaml", Tracing{Enabled: true, Provider: "opentelemetry",
		Exporter: Exporter{Type: "otlp", Endpoint: "localhost:4317", Insecure: true},
		Sampling: Sampling{Type: "probabilistic", Rate: 0.1},
		Resource: Resource{ServiceName: DefaultServiceName}}},
	{"tempo", "tempo.yaml", Tracing{Enabled: true, Provider: "opentelemetry",
		Exporter: Exporter{Type: "otlp", Endpoint: "tempo:4317", Insecure: true},
		Sampling: Sampling{Type: "always_on", Rate: 1},
		Resource: Resource{ServiceName: DefaultServiceName}}},
	// The config.yaml of the guide's Kubernetes ConfigMap, de-indented as
	// the ConfigMap mounts it.
	{"kubernetes configmap", "kubernetes-configmap.yaml", Tracing{Enabled: true, Provider: "opentelemetry",
		Exporter: Exporter{Type: "otlp", Endpoint: "jaeger-collector.observability.svc:4317"},
		Sampling: Sampling{Type: "probabilistic", Rate: 0.1},
		Resource: Resource{ServiceName: "vllm-semantic-router", DeploymentEnvironment: "production"}}},
	// Troubleshooting snippets: only a rate means probabilistic.
	{"troubleshooting rate only", "troubleshooting-rate-only.yaml", Tracing{Enabled: true, Provider: "opentelemetry",
		Exporter: Exporter{Type: "stdout"},
		Sampling: Sampling{Type: "probabilistic", Rate: 0.01},
		Resource: Resource{ServiceName: DefaultServiceName}}},
}

func TestGuideExamplesLoad(t *testing.T) {
	for _, tc := range guideExamples {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse(testenv.GuideExample(t, tc.file))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !equalTracing(cfg.Tracing, tc.want) {
				t.Fatalf("tracing:\n got %+v\nwant %+v", cfg.Tracing, tc.want)
			}
			if cfg.Agent.Export != DefaultConfig().Agent.Export {
				t.Fatalf("export defaults changed: %+v", cfg.Agent.Export)
			}
		})
	}
}

func equalTracing(a, b Tracing) bool {
	ah, bh := a.Exporter.Headers, b.Exporter.Headers
	a.Exporter.Headers, b.Exporter.Headers = nil, nil
	if len(ah) != len(bh) {
		return false
	}
	for k, v := range ah {
		if bh[k] != v {
			return false
		}
	}
	return a.Enabled == b.Enabled && a.Provider == b.Provider && a.Exporter.Type == b.Exporter.Type &&
		a.Exporter.Endpoint == b.Exporter.Endpoint && a.Exporter.Insecure == b.Exporter.Insecure &&
		a.Exporter.Timeout == b.Exporter.Timeout && a.Exporter.CAFile == b.Exporter.CAFile &&
		a.Sampling == b.Sampling && reflect.DeepEqual(a.Resource, b.Resource) &&
		a.Exporter.Protocol == b.Exporter.Protocol
}

func TestDefaults(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	tr := cfg.Tracing
	if !tr.Enabled || tr.Exporter.Type != "stdout" || tr.Sampling.Type != "always_on" || tr.Resource.ServiceName != "vllm-semantic-router" {
		t.Fatalf("defaults: %+v", tr)
	}
	if p := cfg.Agent.Propagation; !p.Extract || !p.Inject {
		t.Errorf("trace context propagation is off by default: %+v", p)
	}
	off, err := Parse([]byte("routerscope:\n  propagation: {inject: false}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p := off.Agent.Propagation; !p.Extract || p.Inject {
		t.Errorf("propagation {inject: false} read as %+v", p)
	}
}

func TestRouterConfigWithOtherKeys(t *testing.T) {
	doc := `bert_model:
  model_id: sentence-transformers/all-MiniLM-L12-v2
vllm_endpoints:
  - name: endpoint1
    address: 127.0.0.1
    port: 8000
categories:
  - name: math
observability:
  metrics:
    enabled: true
  tracing:
    enabled: true
    exporter:
      type: otlp
      endpoint: "collector:4317"
      insecure: true
      headers: {authorization: "Bearer x"}
      timeout: 3s
routerscope:
  targets: [{pid: 42}, {binary: /usr/bin/router}]
  probes: [probes/router.yaml, /abs/other.yaml]
  export: {queue_size: 100, max_batch_size: 10, batch_timeout: 200ms, shutdown_timeout: 2s}
  max_span_age: 1m
  metrics: {listen: "127.0.0.1:9999", pprof: true}
  log_level: debug
  log_format: json
`
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadFile(path)
	if err != nil {
		t.Fatalf("LoadFile: %v", err)
	}
	a := cfg.Agent
	if len(a.Targets) != 2 || a.Targets[0].PID != 42 || a.Targets[1].Binary != "/usr/bin/router" {
		t.Errorf("targets: %+v", a.Targets)
	}
	if a.Probes[0] != filepath.Join(dir, "probes/router.yaml") || a.Probes[1] != "/abs/other.yaml" {
		t.Errorf("probes not resolved against the config dir: %v", a.Probes)
	}
	want := ExportSettings{QueueSize: 100, MaxBatchSize: 10, BatchTimeout: 200 * time.Millisecond, ShutdownTimeout: 2 * time.Second}
	if a.Export != want || a.MaxSpanAge != time.Minute || a.LogLevel != "debug" || a.LogFormat != "json" {
		t.Errorf("agent: %+v", a)
	}
	if a.Metrics != (Metrics{Listen: "127.0.0.1:9999", Pprof: true}) {
		t.Errorf("metrics: %+v", a.Metrics)
	}
	if DefaultConfig().Agent.Metrics.Pprof {
		t.Error("pprof is on by default")
	}
	e := cfg.Tracing.Exporter
	if e.Headers["authorization"] != "Bearer x" || e.Timeout != 3*time.Second {
		t.Errorf("exporter: %+v", e)
	}
	if cfg.Path != path {
		t.Errorf("path %q", cfg.Path)
	}
}

func TestTracingBlockWithoutEnabledIsOff(t *testing.T) {
	cfg, err := Parse([]byte("observability:\n  tracing:\n    exporter: {type: stdout}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Tracing.Enabled {
		t.Fatal("a tracing block without enabled: true must be off, as in the router")
	}
	cfg, err = Parse([]byte("routerscope:\n  log_level: warn\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Tracing.Enabled {
		t.Fatal("with no tracing block the agent's defaults (on) apply")
	}
}

func TestConfigErrors(t *testing.T) {
	tr := func(body string) string { return "observability:\n  tracing:\n    enabled: true\n" + body }
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"empty file", "", []string{"empty"}},
		{"unknown propagation key", "routerscope:\n  propagation: {extract: true, baggage: true}\n",
			[]string{"routerscope.propagation", "baggage"}},
		{"propagation not a bool", "routerscope:\n  propagation: {inject: sometimes}\n",
			[]string{"routerscope.propagation.inject"}},
		{"only comments", "# nothing\n", []string{"empty"}},
		{"not a mapping", "- a\n- b\n", []string{"top level must be a mapping"}},
		{"bad yaml", "observability: [\n", []string{"parse YAML"}},
		{"unknown exporter type", tr("    exporter:\n      type: zipkin\n"),
			[]string{"observability.tracing.exporter.type", `"zipkin"`, "stdout, otlp"}},
		{"rate above 1", tr("    sampling:\n      type: probabilistic\n      rate: 1.5\n"),
			[]string{"observability.tracing.sampling.rate", "1.5", "0..1"}},
		{"rate below 0", tr("    sampling:\n      type: probabilistic\n      rate: -0.1\n"),
			[]string{"sampling.rate", "0..1"}},
		{"probabilistic without rate", tr("    sampling:\n      type: probabilistic\n"),
			[]string{"observability.tracing.sampling.rate", "required when sampling.type is probabilistic"}},
		{"unknown sampling type", tr("    sampling:\n      type: sometimes\n"),
			[]string{"sampling.type", "always_on, always_off, probabilistic"}},
		{"otlp without endpoint", tr("    exporter:\n      type: otlp\n"),
			[]string{"observability.tracing.exporter.endpoint", "required when exporter.type is otlp"}},
		{"bad provider", tr("    provider: datadog\n"),
			[]string{"observability.tracing.provider", `"datadog"`, "opentelemetry"}},
		{"unknown tracing key", tr("    exporters: {}\n"),
			[]string{"observability.tracing.exporters", "unknown key", "enabled, exporter, provider, resource, sampling"}},
		{"unknown exporter key", tr("    exporter:\n      endpont: x:1\n"),
			[]string{"observability.tracing.exporter.endpont", "ca_file, endpoint, format, headers, insecure, protocol, reconnect_backoff, timeout, type"}},
		{"unknown resource key", tr("    resource:\n      service: x\n"),
			[]string{"observability.tracing.resource.service", "service_name"}},
		{"unknown routerscope key", "routerscope:\n  target: []\n",
			[]string{"routerscope.target", "unknown key", "targets"}},
		{"unknown target key", "routerscope:\n  targets: [{process: 3}]\n",
			[]string{"routerscope.targets[0].process", "binary, pid"}},
		{"unknown export key", "routerscope:\n  export: {queue: 3}\n",
			[]string{"routerscope.export.queue", "queue_size"}},
		{"enabled not bool", tr("")[:len(tr(""))-len("true\n")] + "\"yes\"\n",
			[]string{"observability.tracing.enabled", "boolean", `"yes"`}},
		{"rate not number", tr("    sampling:\n      type: probabilistic\n      rate: ten\n"),
			[]string{"sampling.rate", "want a number", `"ten"`}},
		{"exporter not mapping", tr("    exporter: otlp\n"),
			[]string{"observability.tracing.exporter", "want a mapping"}},
		{"type not string", tr("    exporter:\n      type: 5\n"),
			[]string{"exporter.type", "want a string", "integer"}},
		{"tracing not mapping", "observability:\n  tracing: yes\n",
			[]string{"observability.tracing", "want a mapping"}},
		{"bad timeout", tr("    exporter:\n      timeout: soon\n"),
			[]string{"exporter.timeout", `"soon"`, "10s"}},
		{"ca_file with insecure", tr("    exporter:\n      type: otlp\n      endpoint: x:1\n      insecure: true\n      ca_file: /ca.pem\n"),
			[]string{"ca_file", "insecure"}},
		{"pid not int", "routerscope:\n  targets: [{pid: abc}]\n",
			[]string{"routerscope.targets[0].pid", "want an integer"}},
		{"target with both", "routerscope:\n  targets: [{pid: 3, binary: /x}]\n",
			[]string{"routerscope.targets[0]", "exactly one of pid or binary"}},
		{"probes not list", "routerscope:\n  probes: a.yaml\n",
			[]string{"routerscope.probes", "want a list of strings"}},
		{"batch larger than queue", "routerscope:\n  export: {queue_size: 10, max_batch_size: 20}\n",
			[]string{"max_batch_size 20", "queue_size 10"}},
		{"bad log level", "routerscope:\n  log_level: loud\n",
			[]string{"routerscope.log_level", "debug, info, warn, error"}},
		{"bad log format", "routerscope:\n  log_format: xml\n",
			[]string{"routerscope.log_format", "console, json"}},
		{"empty service name", tr("    resource:\n      service_name: \"\"\n"),
			[]string{"resource.service_name", "empty"}},
		{"duplicate key", tr("    enabled: false\n"),
			[]string{"enabled", "twice"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", tc.yaml)
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error %q does not wrap ErrConfig", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "read config") {
		t.Fatalf("missing file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFile(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty file: %v", err)
	}
}

func TestConfigPath(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "CONFIG_PATH" {
				return v
			}
			return ""
		}
	}
	if got := Path("a.yaml", env("b.yaml")); got != "a.yaml" {
		t.Errorf("flag must win: %q", got)
	}
	if got := Path("", env("b.yaml")); got != "b.yaml" {
		t.Errorf("CONFIG_PATH: %q", got)
	}
	if got := Path("", env("")); got != "" {
		t.Errorf("defaults: %q", got)
	}
}

func TestExampleAgentConfigLoads(t *testing.T) {
	cfg, err := LoadFile(filepath.Join("..", "..", "config", "agent.yaml"))
	if err != nil {
		t.Fatalf("config/agent.yaml: %v", err)
	}
	if !cfg.Tracing.Enabled || cfg.Tracing.Exporter.Type != ExporterStdout || len(cfg.Agent.Targets) != 1 ||
		cfg.Agent.Targets[0].Binary != "/usr/local/bin/router" || cfg.Agent.Export != DefaultConfig().Agent.Export {
		t.Fatalf("config/agent.yaml loaded as %+v", cfg)
	}
}
