package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDiscoveryConfig(t *testing.T) {
	cfg, err := Parse([]byte(`routerscope:
  probes: [global.yaml]
  discovery:
    interval: 250ms
    settle: 2s
    rescan_interval: 1m
    max_processes: 8
    rules:
      - name: router
        executable: "/usr/local/bin/router*"
        probes: [probes/router.yaml]
      - comm: router
        port: 8801
        cmdline: "--config"
    exclude:
      - comm: otelcol
  metrics:
    listen: "127.0.0.1:9999"
  watch_interval: 0s
`))
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Agent.Discovery
	if len(d.Rules) != 2 || d.Rules[0].Name != "router" || d.Rules[1].Name != "rule1" || d.Rules[1].Port != 8801 ||
		d.Rules[1].cmdline == nil || len(d.Exclude) != 1 || d.Interval.Milliseconds() != 250 || d.MaxProcesses != 8 ||
		d.RetryInterval == 0 || d.Settle.Seconds() != 2 || d.Rescan.Minutes() != 1 || cfg.Agent.Metrics.Listen != "127.0.0.1:9999" || cfg.Agent.WatchInterval != 0 {
		t.Fatalf("%+v", cfg.Agent)
	}
	if def := DefaultConfig(); def.Agent.Metrics.Listen != DefaultMetricsListen || def.Agent.Discovery.Interval.Milliseconds() != 500 ||
		def.Agent.Discovery.Settle != DefaultSettle || def.Agent.Discovery.Rescan != DefaultRescan {
		t.Fatalf("defaults %+v", def.Agent)
	}
	bad := []struct{ yaml, want string }{
		{"routerscope:\n  discovery:\n    rules:\n      - name: x\n", "routerscope.discovery.rules[0]: set at least one of executable, comm, cmdline, port, pid"},
		{"routerscope:\n  discovery:\n    rules:\n      - cmdline: \"(\"\n", "routerscope.discovery.rules[0].cmdline: \"(\" is not a valid regular expression"},
		{"routerscope:\n  discovery:\n    rules:\n      - executable: \"[\"\n", "routerscope.discovery.rules[0].executable: \"[\" is not a valid glob"},
		{"routerscope:\n  discovery:\n    rules:\n      - port: 70000\n", "port: 70000 is not a TCP port"},
		{"routerscope:\n  discovery:\n    rules:\n      - pid: 1\n        name: a\n      - pid: 2\n        name: a\n", `"a" is used by two rules`},
		{"routerscope:\n  discovery:\n    exclude:\n      - {}\n", "routerscope.discovery.exclude[0]: set at least one"},
		{"routerscope:\n  discovery:\n    rules:\n      - binary: /x\n", "routerscope.discovery.rules[0].binary (line 4): unknown key, allowed keys in routerscope.discovery.rules[0]: cmdline, comm, executable, name, pid, port, probes"},
		{"routerscope:\n  discovery:\n    interval: 0s\n", "interval and retry_interval must be positive"},
		{"routerscope:\n  discovery:\n    max_processes: 0\n", "max_processes: must be positive"},
		{"routerscope:\n  discovery:\n    settle: -1s\n", "settle, rescan_interval and retry_interval must be positive"},
		{"routerscope:\n  discovery:\n    rescan_interval: -1s\n", "settle, rescan_interval and retry_interval must be positive"},
		{"routerscope:\n  metrics:\n    port: 1\n", "routerscope.metrics.port (line 3): unknown key"},
		{"routerscope:\n  watch_interval: -1s\n", "watch_interval: must not be negative"},
	}
	for _, tc := range bad {
		_, err := Parse([]byte(tc.yaml))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// TestDiscoveryScheduleDefaults: a Discovery built in Go without the exec
// schedule's durations gets their defaults at validation.
func TestDiscoveryScheduleDefaults(t *testing.T) {
	d := Discovery{Interval: 1, RetryInterval: 1, MaxProcesses: 1}
	if err := d.validate(); err != nil {
		t.Fatal(err)
	}
	if d.Settle != DefaultSettle || d.Rescan != DefaultRescan {
		t.Errorf("settle %v, rescan %v: want the defaults", d.Settle, d.Rescan)
	}
}

func TestLoadFileResolvesRuleProbes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	body := "routerscope:\n  discovery:\n    rules:\n      - comm: router\n        probes: [probes/router.yaml, /abs/p.yaml]\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Agent.Discovery.Rules[0].Probes; p[0] != filepath.Join(dir, "probes/router.yaml") || p[1] != "/abs/p.yaml" {
		t.Fatalf("probes %v", p)
	}
}

// TestExampleDiscoveryBlockLoads uncomments config/agent.yaml's discovery
// example and loads it, so the documented example stays valid.
func TestExampleDiscoveryBlockLoads(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "  # discovery:"):
			in = true
		case in && strings.TrimSpace(line) == "#":
			in = false
		}
		if in {
			line = strings.Replace(line, "# ", "", 1)
		}
		out = append(out, line)
	}
	cfg, err := Parse([]byte(strings.Join(out, "\n")))
	if err != nil {
		t.Fatalf("uncommented discovery example: %v", err)
	}
	d := cfg.Agent.Discovery
	if len(d.Rules) != 2 || d.Rules[0].Name != "router" || d.Rules[1].Port != 8801 || len(d.Exclude) != 1 ||
		d.MaxProcesses != 64 || cfg.Agent.Metrics.Listen != ":9464" {
		t.Fatalf("example loaded as %+v", cfg.Agent)
	}
}
