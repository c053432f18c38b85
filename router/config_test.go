package router

import (
	"errors"
	"strings"
	"testing"
)

const shippedConfig = "../config/router.yaml"

func TestShippedConfigLoads(t *testing.T) {
	cfg, err := LoadConfig(shippedConfig)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Listen != DefaultListen || cfg.DefaultModel != "qwen3-8b" {
		t.Fatalf("unexpected server/default model: %+v %q", cfg.Server, cfg.DefaultModel)
	}
	c := trainedClassifier(t)
	for _, name := range c.Categories() {
		if cfg.category(name) == nil {
			t.Errorf("classifier category %q has no entry in %s", name, shippedConfig)
		}
	}
}

// The tracing agent's observability block shares the file; the router must
// accept it however deep it goes, while staying strict everywhere else.
func TestObservabilityBlockIgnored(t *testing.T) {
	base := minimalConfig
	withObs := base + `
observability:
  tracing:
    enabled: true
    provider: "opentelemetry"
    exporter:
      type: "otlp"
      endpoint: "localhost:4317"
      insecure: true
    sampling:
      type: "probabilistic"
      rate: 0.1
    resource:
      service_name: "vllm-semantic-router"
      service_version: "v0.1.0"
      deployment_environment: "production"
`
	if _, err := ParseConfig([]byte(withObs)); err != nil {
		t.Fatalf("config with observability.tracing rejected: %v", err)
	}
}

const minimalConfig = `
default_model: m1
vllm_endpoints:
  - {name: e1, address: 127.0.0.1, port: 8000, models: [m1]}
`

func TestConfigErrorsNameTheKey(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown top-level key", minimalConfig + "bogus: 1\n", "bogus"},
		{"unknown nested key", minimalConfig + "semantic_cache: {enabled: true, similarity: 0.9}\n", "similarity"},
		{"missing default model", "vllm_endpoints: [{name: e1, address: h, port: 1, models: [m]}]\n", "default_model"},
		{"bad port", "default_model: m1\nvllm_endpoints: [{name: e1, address: h, port: 70000, models: [m1]}]\n", "vllm_endpoints[0].port"},
		{"unserved model", "default_model: m2\nvllm_endpoints: [{name: e1, address: h, port: 1, models: [m1]}]\n", `model "m2"`},
		{"unknown preferred endpoint", minimalConfig + "model_config: {m1: {preferred_endpoints: [nope]}}\n", "model_config.m1.preferred_endpoints"},
		{"unknown reasoning family", minimalConfig + "model_config: {m1: {reasoning_family: x}}\n", "model_config.m1.reasoning_family"},
		{"unknown PII type", minimalConfig + "model_config: {m1: {pii_policy: {pii_types_allowed: [SHOE_SIZE]}}}\n", "SHOE_SIZE"},
		{"bad cache threshold", minimalConfig + "semantic_cache: {enabled: true, similarity_threshold: 1.5, max_entries: 3}\n", "semantic_cache.similarity_threshold"},
		{"bad guard threshold", minimalConfig + "prompt_guard: {enabled: true, threshold: 0}\n", "prompt_guard.threshold"},
		{"bad prompt mode", minimalConfig + "categories: [{name: math, system_prompt_mode: append}]\n", "categories[0].system_prompt_mode"},
		{"score out of range", minimalConfig + "categories: [{name: math, model_scores: [{model: m1, score: 2}]}]\n", "model_scores[0].score"},
		{"bad effort", minimalConfig + "default_reasoning_effort: extreme\n", "default_reasoning_effort"},
		{"timeout without unit", minimalConfig + "server: {upstream_timeout: 30}\n", "time.Duration"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q: want ErrInvalidConfig naming %q", err, tc.want)
			}
		})
	}
}

func TestConfigDefaultsAndOverride(t *testing.T) {
	cfg, err := ParseConfig([]byte(minimalConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Listen != DefaultListen || cfg.Server.UpstreamTimeout != DefaultUpstreamTimeout ||
		cfg.Server.MaxBodyBytes != DefaultMaxBodyBytes || cfg.VLLMEndpoints[0].Weight != 1 {
		t.Fatalf("defaults not applied: %+v %+v", cfg.Server, cfg.VLLMEndpoints[0])
	}
	if err := cfg.OverrideBackends("10.0.0.9:9123"); err != nil {
		t.Fatal(err)
	}
	if ep := cfg.VLLMEndpoints[0]; ep.Address != "10.0.0.9" || ep.Port != 9123 {
		t.Fatalf("override not applied: %+v", ep)
	}
	for _, bad := range []string{"nohost", "h:0", "h:port"} {
		if err := cfg.OverrideBackends(bad); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("override %q: got %v, want ErrInvalidConfig", bad, err)
		}
	}
}

// TestLoadConfigWithOverrides: the shipped config with the command line's
// listen and backend applied; empty overrides keep the file's values.
func TestLoadConfigWithOverrides(t *testing.T) {
	path := "../config/router.yaml"
	plain, err := LoadConfigWithOverrides(path, "", "")
	if err != nil {
		t.Fatal(err)
	}
	file, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if plain.Server.Listen != file.Server.Listen || plain.VLLMEndpoints[0].Address != file.VLLMEndpoints[0].Address ||
		plain.VLLMEndpoints[0].Port != file.VLLMEndpoints[0].Port {
		t.Errorf("empty overrides changed the config: %+v %+v", plain.Server, plain.VLLMEndpoints[0])
	}
	cfg, err := LoadConfigWithOverrides(path, "127.0.0.1:0", "10.0.0.9:9123")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Listen != "127.0.0.1:0" {
		t.Errorf("listen %q, want the override", cfg.Server.Listen)
	}
	for _, ep := range cfg.VLLMEndpoints {
		if ep.Address != "10.0.0.9" || ep.Port != 9123 {
			t.Errorf("endpoint %+v not overridden", ep)
		}
	}
	if _, err := LoadConfigWithOverrides(path, "", "nohost"); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bad backend: %v, want ErrInvalidConfig", err)
	}
	rt, withRouter, err := NewFromFile(path, "127.0.0.1:0", "")
	if err != nil || rt == nil || withRouter.Server.Listen != "127.0.0.1:0" {
		t.Errorf("NewFromFile: %v, %v, %+v", rt, err, withRouter)
	}
}
