package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/routerscope/routerscope/agent"
	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/internal/otlptest"
	"github.com/routerscope/routerscope/internal/testenv"
	"github.com/routerscope/routerscope/probes"
)

// oneRequest is a synthetic capture: one request span, then the source
// ends as when the target exits.
type oneRequest struct {
	mu     sync.Mutex
	events []probes.Event
	closed bool
}

var errEnded = errors.New("target exited")

func (s *oneRequest) Read(ctx context.Context) (probes.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.events) == 0 || s.closed {
		return probes.Event{}, errEnded
	}
	ev := s.events[0]
	s.events = s.events[1:]
	return ev, nil
}

func (s *oneRequest) Lost() uint64 { return 0 }

func (s *oneRequest) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func fakeAttacher(got *agent.AttachRequest) func(config.Kernel) (captureEngine, error) {
	return func(config.Kernel) (captureEngine, error) {
		return captureEngine{close: func() error { return nil }, attach: func(_ context.Context, req agent.AttachRequest) (agent.EventSource, error) {
			*got = req
			p := &probes.Resolved{Spec: probes.Probe{Span: "semantic_router.request.received", Kind: "server",
				Attributes: []probes.Attribute{{Name: "processing.time_ms", From: "duration_ms"}}}, ParentID: -1}
			t0 := time.Now()
			tr, sp := [16]byte{1, 2, 3}, [8]byte{4, 5, 6}
			return &oneRequest{events: []probes.Event{
				{Kind: probes.EventEntry, Probe: p, PID: uint32(req.Target.PID), Time: t0, TraceID: tr, SpanID: sp, Sampled: true},
				{Kind: probes.EventReturn, Probe: p, PID: uint32(req.Target.PID), Time: t0.Add(45 * time.Millisecond), TraceID: tr, SpanID: sp, Sampled: true},
			}}, nil
		}}, nil
	}
}

func newCLI(env map[string]string, attach func(config.Kernel) (captureEngine, error)) (cli, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	return cli{stdout: &out, stderr: &errOut, getenv: func(k string) string { return env[k] }, newAttacher: attach,
		// Tests run in parallel with other packages: never the fixed port.
		listen: func(string) (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }}, &out, &errOut
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}, {"run", "--help"}} {
		c, out, _ := newCLI(nil, newAttacher)
		if code := c.main(context.Background(), args); code != exitOK {
			t.Errorf("%v: exit %d", args, code)
		}
		for _, want := range []string{"routerscope run", "--pid N", "--binary PATH", "CONFIG_PATH", "CAP_BPF", "CAP_PERFMON", "Examples:", "always_off", "OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT", "flags > OTEL_* > file"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%v: help lacks %q", args, want)
			}
		}
	}
	c, out, _ := newCLI(nil, newAttacher)
	if code := c.main(context.Background(), []string{"version"}); code != exitOK || !strings.HasPrefix(out.String(), "routerscope "+agent.Version) {
		t.Errorf("version: exit %d %q", code, out.String())
	}
	c, _, errOut := newCLI(nil, newAttacher)
	if code := c.main(context.Background(), nil); code != exitUsage || !strings.Contains(errOut.String(), "Usage:") {
		t.Errorf("no args: exit %d", code)
	}
}

func TestUsageErrors(t *testing.T) {
	badCfg := writeFile(t, "bad.yaml", "observability:\n  tracing:\n    enabled: true\n    exporter:\n      type: kafka\n")
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"frobnicate"}, nil, `unknown command "frobnicate"`},
		{[]string{"run", "--pid"}, nil, "flag needs an argument: -pid"},
		{[]string{"run", "--pid", "abc"}, nil, `invalid value "abc" for flag -pid`},
		{[]string{"run", "--nope"}, nil, "flag provided but not defined: -nope"},
		{[]string{"run", "--pid", "1", "--binary", "/x"}, nil, "--pid and --binary are exclusive"},
		{[]string{"run", "--pid", "-3", "--probes", "p.yaml"}, nil, "--pid -3 is not a process id"},
		{[]string{"run", "--pid", "1", "extra"}, nil, `unexpected argument "extra"`},
		{[]string{"run", "--probes", "p.yaml"}, nil, "no target"},
		{[]string{"run", "--pid", "1"}, nil, "no probe files"},
		{[]string{"run", "--pid", "1", "--probes", "p.yaml", "--log-level", "loud"}, nil, "--log-level / routerscope.log_level"},
		{[]string{"run", "--pid", "1", "--probes", "p.yaml", "--log-format", "xml"}, nil, "console, json"},
		{[]string{"run", "--pid", "1", "--probes", "p.yaml", "--config", badCfg}, nil, "observability.tracing.exporter.type"},
		{[]string{"run", "--pid", "1", "--probes", "p.yaml"}, map[string]string{"CONFIG_PATH": badCfg}, `unknown exporter type "kafka"`},
		{[]string{"run", "--pid", "1", "--probes", "p.yaml"}, map[string]string{"OTEL_TRACES_SAMPLER": "sometimes"}, `OTEL_TRACES_SAMPLER="sometimes"`},
		{[]string{"run", "--pid", "1", "--probes", "p.yaml"}, map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"},
	}
	for _, tc := range cases {
		c, _, errOut := newCLI(tc.env, newAttacher)
		code := c.main(context.Background(), tc.args)
		if code != exitUsage || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want 2 and %q", tc.args, code, errOut.String(), tc.want)
		}
	}
}

func TestRuntimeErrors(t *testing.T) {
	c, _, errOut := newCLI(nil, newAttacher)
	code := c.main(context.Background(), []string{"run", "--pid", "1", "--probes", "p.yaml"})
	// Whichever step fails first here (reading pid 1's executable, or the
	// missing probe file), it is a runtime error naming the target.
	if code != exitRuntime || !strings.Contains(errOut.String(), "attach to pid 1") {
		t.Errorf("attach error: exit %d %q", code, errOut.String())
	}
	c, _, errOut = newCLI(nil, newAttacher)
	code = c.main(context.Background(), []string{"run", "--pid", "1", "--probes", "p.yaml", "--config", "/nonexistent/config.yaml"})
	if code != exitRuntime || !strings.Contains(errOut.String(), "read config /nonexistent/config.yaml") {
		t.Errorf("missing config: exit %d %q", code, errOut.String())
	}
}

func TestRunToStdoutWithGuideConfig(t *testing.T) {
	// The guide's Development example, through CONFIG_PATH, with JSON logs.
	cfg := writeFile(t, "config.yaml", string(testenv.GuideExample(t, "development.yaml")))
	var req agent.AttachRequest
	c, out, errOut := newCLI(map[string]string{"CONFIG_PATH": cfg}, fakeAttacher(&req))
	// PID 4242 is made up but may exist on a busy machine: the agent must
	// not read that process (it named the target by its executable).
	c.proc = t.TempDir()
	code := c.main(context.Background(), []string{"run", "--pid", "4242", "--probes", "a.yaml,b.yaml", "--log-format", "json"})
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if req.Target.PID != 4242 || len(req.Probes) != 2 || req.SampleRatio != 1 {
		t.Errorf("attach request %+v", req)
	}
	var span struct {
		Name        string
		SpanContext struct{ TraceID string }
		Attributes  []struct {
			Key   string
			Value struct{ Value any }
		}
		Resource []struct {
			Key   string
			Value struct{ Value any }
		}
	}
	if err := json.Unmarshal(out.Bytes(), &span); err != nil {
		t.Fatalf("stdout is not one JSON span: %v\n%s", err, out.String())
	}
	if span.Name != "semantic_router.request.received" || span.SpanContext.TraceID != "01020300000000000000000000000000" {
		t.Errorf("span %+v", span)
	}
	if len(span.Attributes) != 1 || span.Attributes[0].Key != "processing.time_ms" || span.Attributes[0].Value.Value != float64(45) {
		t.Errorf("attributes %+v", span.Attributes)
	}
	var svc any
	for _, kv := range span.Resource {
		if kv.Key == "service.name" {
			svc = kv.Value.Value
		}
	}
	if svc != "vllm-semantic-router-dev" {
		t.Errorf("service.name %v", svc)
	}
	// Every log line is JSON with the constant keys.
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	sawAttached := false
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		if m["msg"] == "attached" && m[agent.LogKeyTarget] == "pid 4242" {
			sawAttached = true
		}
	}
	if !sawAttached {
		t.Errorf("no attached log line: %s", errOut.String())
	}
}

func TestDisabledConfigAttachesNothing(t *testing.T) {
	cfg := writeFile(t, "config.yaml", "observability:\n  tracing:\n    enabled: false\n")
	var req agent.AttachRequest
	c, out, errOut := newCLI(nil, fakeAttacher(&req))
	if code := c.main(context.Background(), []string{"run", "--config", cfg, "--pid", "9", "--probes", "p.yaml"}); code != exitOK {
		t.Fatalf("exit %d %s", code, errOut.String())
	}
	if req.Target.PID != 0 || out.Len() != 0 || !strings.Contains(errOut.String(), "observability.tracing.enabled is false") {
		t.Fatalf("attached %+v, stdout %q, log %q", req, out.String(), errOut.String())
	}
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRunToOTLPWithGuideConfig(t *testing.T) {
	rcv := otlptest.StartT(t)
	// The guide's Jaeger example, pointed at the in-test receiver.
	cfg := writeFile(t, "config.yaml", `observability:
  tracing:
    enabled: true
    exporter:
      type: "otlp"
      endpoint: "`+rcv.Endpoint()+`"
      insecure: true
    sampling:
      type: "probabilistic"
      rate: 0.1
`)
	var req agent.AttachRequest
	c, out, errOut := newCLI(nil, fakeAttacher(&req))
	if code := c.main(context.Background(), []string{"run", "--config", cfg, "--pid", "31", "--probes", "p.yaml"}); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if req.SampleRatio != 0.1 || out.Len() != 0 {
		t.Errorf("sample ratio %v, stdout %q", req.SampleRatio, out.String())
	}
	spans := rcv.Spans()
	if len(spans) != 1 || spans[0].Name != "semantic_router.request.received" || spans[0].TraceIDHex() != "01020300000000000000000000000000" {
		t.Fatalf("received %v", spans)
	}
	if v, _ := spans[0].ResourceAttr("service.name"); v.GetStringValue() != "vllm-semantic-router" {
		t.Errorf("service.name %v", v)
	}
}

// TestRunReadsTheRouterConfig: with no --config and no CONFIG_PATH, the
// agent reads observability.tracing from the file the router was started
// with (the guide's advice: add the section to the router's config.yaml).
func TestRunReadsTheRouterConfig(t *testing.T) {
	proc := t.TempDir()
	pidDir := filepath.Join(proc, "4242")
	routerRoot := filepath.Join(pidDir, "root")
	if err := os.MkdirAll(filepath.Join(routerRoot, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	routerCfg := `categories: [{name: math}]
observability:
  tracing:
    enabled: true
    exporter: {type: "stdout"}
    sampling: {type: "probabilistic", rate: 0.25}
    resource: {service_name: "router-from-its-own-config"}
`
	if err := os.WriteFile(filepath.Join(routerRoot, "app/config.yaml"), []byte(routerCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pidDir, "cmdline"), []byte("/app/router\x00--config\x00config.yaml\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pidDir, "environ"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/app", filepath.Join(pidDir, "cwd")); err != nil {
		t.Fatal(err)
	}
	var req agent.AttachRequest
	c, out, errOut := newCLI(nil, fakeAttacher(&req))
	c.proc = proc
	if code := c.main(context.Background(), []string{"run", "--pid", "4242", "--probes", "a.yaml", "--log-format", "json"}); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if req.SampleRatio != 0.25 {
		t.Errorf("sample ratio %v, want the router config's 0.25", req.SampleRatio)
	}
	if !strings.Contains(errOut.String(), `"config":"--config of pid 4242 (/app/config.yaml)"`) {
		t.Errorf("the log does not say which config was read:\n%s", errOut.String())
	}
	if !strings.Contains(out.String(), "router-from-its-own-config") {
		t.Errorf("spans do not carry the router config's service name:\n%.400s", out.String())
	}
}

// TestRunWithOTELEnv: the OTEL_* variables override the file (flags >
// OTEL_* > file > defaults), here sending to OTLP what the file sends to
// stdout.
func TestRunWithOTELEnv(t *testing.T) {
	rcv := otlptest.StartT(t)
	cfg := writeFile(t, "config.yaml", `observability:
  tracing:
    enabled: true
    exporter:
      type: "stdout"
    sampling:
      type: "always_on"
    resource:
      service_name: "from-file"
      service_version: "v1"
routerscope:
  log_level: warn
`)
	env := map[string]string{
		"CONFIG_PATH":                 cfg,
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + rcv.Endpoint(),
		"OTEL_SERVICE_NAME":           "from-env",
		"OTEL_RESOURCE_ATTRIBUTES":    "team=infra",
		"OTEL_TRACES_SAMPLER":         "parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG":     "0.5",
	}
	var req agent.AttachRequest
	c, out, errOut := newCLI(env, fakeAttacher(&req))
	if code := c.main(context.Background(), []string{"run", "--pid", "31", "--probes", "p.yaml", "--log-level", "info"}); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if req.SampleRatio != 0.5 || out.Len() != 0 {
		t.Errorf("sample ratio %v, stdout %q", req.SampleRatio, out.String())
	}
	// The flag wins over the file's warn: info lines are logged.
	if !strings.Contains(errOut.String(), "INFO\tattached") {
		t.Errorf("--log-level info did not win over the file: %s", errOut.String())
	}
	spans := rcv.Spans()
	if len(spans) != 1 {
		t.Fatalf("received %v", spans)
	}
	for k, want := range map[string]string{"service.name": "from-env", "service.version": "v1", "team": "infra"} {
		if v, _ := spans[0].ResourceAttr(k); v.GetStringValue() != want {
			t.Errorf("resource %s = %v, want %q", k, v, want)
		}
	}
}
