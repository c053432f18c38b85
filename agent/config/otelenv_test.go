package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// fileConfig is a config file that sets every key the OTEL_* variables
// also set, so each case shows the variable winning over the file.
const fileConfig = `observability:
  tracing:
    enabled: true
    exporter:
      type: otlp
      endpoint: "file-collector:4317"
      insecure: true
      headers: {x-file: "1", authorization: "file"}
      timeout: "3s"
    sampling:
      type: always_on
    resource:
      service_name: from-file
      service_version: "1.0"
routerscope:
  export:
    queue_size: 1000
    max_batch_size: 100
    batch_timeout: "2s"
`

func TestApplyEnvOverridesFile(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, c Config)
	}{
		{"nothing set keeps the file", nil, func(t *testing.T, c Config) {
			if c.Tracing.Exporter.Endpoint != "file-collector:4317" || c.Tracing.Resource.ServiceName != "from-file" ||
				c.Agent.Export.QueueSize != 1000 || c.Tracing.Sampling.Type != SamplingAlwaysOn {
				t.Errorf("config changed with no OTEL_* set: %+v", c.Tracing)
			}
		}},
		{"OTEL_SDK_DISABLED", map[string]string{"OTEL_SDK_DISABLED": "TRUE"}, func(t *testing.T, c Config) {
			if c.Tracing.Enabled {
				t.Error("tracing still enabled")
			}
			if _, attach, why := SampleRatio(c.Tracing); attach || why == "" {
				t.Errorf("attach = %v (%q)", attach, why)
			}
		}},
		{"OTEL_SDK_DISABLED false", map[string]string{"OTEL_SDK_DISABLED": "false"}, func(t *testing.T, c Config) {
			if !c.Tracing.Enabled {
				t.Error("tracing disabled")
			}
		}},
		{"OTEL_SERVICE_NAME wins over OTEL_RESOURCE_ATTRIBUTES", map[string]string{
			"OTEL_SERVICE_NAME":        "svc-env",
			"OTEL_RESOURCE_ATTRIBUTES": "service.name=attr,service.version=2.0,deployment.environment.name=prod,k8s.cluster.name=c%2C1, team = infra ",
		}, func(t *testing.T, c Config) {
			r := c.Tracing.Resource
			if r.ServiceName != "svc-env" || r.ServiceVersion != "2.0" || r.DeploymentEnvironment != "prod" {
				t.Errorf("resource %+v", r)
			}
			if r.Attributes["k8s.cluster.name"] != "c,1" || r.Attributes["team"] != "infra" || len(r.Attributes) != 2 {
				t.Errorf("attributes %v", r.Attributes)
			}
		}},
		{"service.name from attributes", map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=attr"}, func(t *testing.T, c Config) {
			if c.Tracing.Resource.ServiceName != "attr" {
				t.Errorf("service name %q", c.Tracing.Resource.ServiceName)
			}
		}},
		{"OTEL_TRACES_EXPORTER console", map[string]string{"OTEL_TRACES_EXPORTER": "console"}, func(t *testing.T, c Config) {
			if c.Tracing.Exporter.Type != ExporterStdout {
				t.Errorf("type %q", c.Tracing.Exporter.Type)
			}
		}},
		{"OTEL_TRACES_EXPORTER none", map[string]string{"OTEL_TRACES_EXPORTER": "none"}, func(t *testing.T, c Config) {
			if c.Tracing.Exporter.Type != ExporterNone {
				t.Errorf("type %q", c.Tracing.Exporter.Type)
			}
			if _, attach, why := SampleRatio(c.Tracing); attach || !strings.Contains(why, "none") {
				t.Errorf("attach = %v (%q)", attach, why)
			}
		}},
		{"endpoint, traces endpoint wins", map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT":        "https://all:4317",
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4317",
		}, func(t *testing.T, c Config) {
			e := c.Tracing.Exporter
			if e.Endpoint != "http://traces:4317" || !e.Insecure {
				t.Errorf("exporter %+v", e)
			}
		}},
		{"https endpoint means TLS", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://all:4317"}, func(t *testing.T, c Config) {
			e := c.Tracing.Exporter
			if e.Endpoint != "https://all:4317" || e.Insecure || e.Protocol != "" {
				t.Errorf("exporter %+v", e)
			}
		}},
		{"http/protobuf appends the traces path to the base endpoint", map[string]string{
			"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/base/",
		}, func(t *testing.T, c Config) {
			e := c.Tracing.Exporter
			if e.Endpoint != "http://c:4318/base/v1/traces" || e.Protocol != ProtocolHTTPProtobuf {
				t.Errorf("exporter %+v", e)
			}
		}},
		{"http/protobuf keeps the traces endpoint", map[string]string{
			"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
			"OTEL_EXPORTER_OTLP_PROTOCOL":        "grpc",
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom",
		}, func(t *testing.T, c Config) {
			e := c.Tracing.Exporter
			if e.Endpoint != "http://c:4318/custom" || e.Protocol != ProtocolHTTPProtobuf {
				t.Errorf("exporter %+v", e)
			}
		}},
		{"headers merge over the file's", map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20t0k,x-env=2"}, func(t *testing.T, c Config) {
			h := c.Tracing.Exporter.Headers
			if h["authorization"] != "Bearer t0k" || h["x-env"] != "2" || h["x-file"] != "1" {
				t.Errorf("headers %v", h)
			}
		}},
		{"insecure, certificate, timeout", map[string]string{
			"OTEL_EXPORTER_OTLP_INSECURE":           "false",
			"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": "/ca.pem",
			"OTEL_EXPORTER_OTLP_TIMEOUT":            "1500",
			"OTEL_BSP_EXPORT_TIMEOUT":               "9000",
		}, func(t *testing.T, c Config) {
			e := c.Tracing.Exporter
			if e.Insecure || e.CAFile != "/ca.pem" || e.Timeout != 1500*time.Millisecond {
				t.Errorf("exporter %+v", e)
			}
		}},
		{"OTEL_BSP_*", map[string]string{
			"OTEL_BSP_MAX_QUEUE_SIZE":        "4096",
			"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "256",
			"OTEL_BSP_SCHEDULE_DELAY":        "250",
			"OTEL_BSP_EXPORT_TIMEOUT":        "7000",
		}, func(t *testing.T, c Config) {
			x := c.Agent.Export
			if x.QueueSize != 4096 || x.MaxBatchSize != 256 || x.BatchTimeout != 250*time.Millisecond {
				t.Errorf("export %+v", x)
			}
			if c.Tracing.Exporter.Timeout != 7*time.Second {
				t.Errorf("timeout %v", c.Tracing.Exporter.Timeout)
			}
		}},
		{"sampler traceidratio", map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}, func(t *testing.T, c Config) {
			if s := c.Tracing.Sampling; s.Type != SamplingProbabilistic || s.Rate != 0.25 {
				t.Errorf("sampling %+v", s)
			}
		}},
		{"sampler traceidratio default arg", map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio"}, func(t *testing.T, c Config) {
			if s := c.Tracing.Sampling; s.Type != SamplingProbabilistic || s.Rate != 1 {
				t.Errorf("sampling %+v", s)
			}
		}},
		{"sampler always_off", map[string]string{"OTEL_TRACES_SAMPLER": "always_off"}, func(t *testing.T, c Config) {
			if _, attach, _ := SampleRatio(c.Tracing); attach {
				t.Error("always_off attaches")
			}
		}},
		{"sampler parentbased_always_off keeps callers' sampled traces", map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, func(t *testing.T, c Config) {
			if r, attach, _ := SampleRatio(c.Tracing); !attach || r != 0 {
				t.Errorf("ratio %v attach %v", r, attach)
			}
		}},
		{"sampler always_on", map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_always_on"}, func(t *testing.T, c Config) {
			if r, attach, _ := SampleRatio(c.Tracing); !attach || r != 1 {
				t.Errorf("ratio %v attach %v", r, attach)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(fileConfig))
			if err != nil {
				t.Fatal(err)
			}
			if err := ApplyEnv(&cfg, envOf(tc.env)); err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg)
		})
	}
}

func TestApplyEnvOverDefaults(t *testing.T) {
	t.Run("an endpoint selects otlp over the stdout default", func(t *testing.T) {
		cfg := DefaultConfig()
		if err := ApplyEnv(&cfg, envOf(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"})); err != nil {
			t.Fatal(err)
		}
		if e := cfg.Tracing.Exporter; e.Type != ExporterOTLP || e.Endpoint != "http://c:4317" || !e.Insecure {
			t.Errorf("exporter %+v", e)
		}
		if err := cfg.Validate(); err != nil {
			t.Error(err)
		}
	})
	t.Run("an endpoint with OTEL_TRACES_EXPORTER=console stays console", func(t *testing.T) {
		cfg := DefaultConfig()
		err := ApplyEnv(&cfg, envOf(map[string]string{"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Tracing.Exporter.Type != ExporterStdout {
			t.Errorf("type %q", cfg.Tracing.Exporter.Type)
		}
	})
	for proto, want := range map[string]string{"": "http://localhost:4317", "http/protobuf": "http://localhost:4318/v1/traces"} {
		t.Run("otlp without endpoint uses the default for "+proto, func(t *testing.T) {
			cfg := DefaultConfig()
			err := ApplyEnv(&cfg, envOf(map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": proto}))
			if err != nil {
				t.Fatal(err)
			}
			if e := cfg.Tracing.Exporter; e.Endpoint != want || !e.Insecure {
				t.Errorf("exporter %+v", e)
			}
			if err := cfg.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestApplyEnvErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		env  map[string]string
		name string
	}{
		{map[string]string{"OTEL_SDK_DISABLED": "yes"}, "OTEL_SDK_DISABLED"},
		{map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp,console"}, "OTEL_TRACES_EXPORTER"},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "udp"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://c"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
		{map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "1"}, "OTEL_EXPORTER_OTLP_INSECURE"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_CERTIFICATE": "/ca.pem"}, "OTEL_EXPORTER_OTLP_CERTIFICATE"},
		{map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, "OTEL_EXPORTER_OTLP_HEADERS"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "a=%zz"}, "OTEL_EXPORTER_OTLP_TRACES_HEADERS"},
		{map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "=x"}, "OTEL_RESOURCE_ATTRIBUTES"},
		{map[string]string{"OTEL_RESOURCE_ATTRIBUTES": strings.Repeat("a=b,", maxEnvList+1)}, "OTEL_RESOURCE_ATTRIBUTES"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"}, "OTEL_EXPORTER_OTLP_TIMEOUT"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "-5"}, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"},
		{map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER"},
		{map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"}, "OTEL_TRACES_SAMPLER_ARG"},
		{map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "NaN"}, "OTEL_TRACES_SAMPLER_ARG"},
		{map[string]string{"OTEL_BSP_MAX_QUEUE_SIZE": "0"}, "OTEL_BSP_MAX_QUEUE_SIZE"},
		{map[string]string{"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "x"}, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"},
		{map[string]string{"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "5000"}, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"},
		{map[string]string{"OTEL_BSP_SCHEDULE_DELAY": "5s"}, "OTEL_BSP_SCHEDULE_DELAY"},
		{map[string]string{"OTEL_BSP_EXPORT_TIMEOUT": "0"}, "OTEL_BSP_EXPORT_TIMEOUT"},
	}
	for _, tc := range tests {
		cfg := DefaultConfig()
		err := ApplyEnv(&cfg, envOf(tc.env))
		if err == nil {
			t.Errorf("%v: no error", tc.env)
			continue
		}
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("%v: error %q does not name %s (or is not ErrConfig)", tc.env, err, tc.name)
		}
	}
}
