package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// collector is the OpenTelemetry Collector routerscope ships
// (config/collector/builder.yaml), between the agent and a sink in the
// stress runs, so the agent talks to a real collector's OTLP receiver.
type collector struct {
	proc     *proc
	endpoint string
}

// collectorConfig receives OTLP/gRPC on LISTEN and forwards batches to the
// sink on EXPORT; nothing else (no debug exporter, no own telemetry).
const collectorConfig = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %q
processors:
  batch:
    timeout: 200ms
exporters:
  otlp_grpc:
    endpoint: %q
    tls:
      insecure: true
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp_grpc]
`

// startCollector builds the collector if needed (scripts/build-collector.sh
// returns at once when its cached build is current) and starts it
// forwarding to exportTo.
func startCollector(ctx context.Context, p params, exportTo string) (*collector, error) {
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(p.repo, "scripts", "build-collector.sh"))
	cmd.Dir = p.repo
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("build the collector: %w\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	bin := lines[len(lines)-1]
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logs := filepath.Join(p.out, "logs")
	cfg := filepath.Join(logs, "otelcol.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, collectorConfig, listen, exportTo), 0o644); err != nil {
		return nil, err
	}
	pr, err := start(logs, "otelcol", bin, "--config", cfg)
	if err != nil {
		return nil, err
	}
	if err := pr.waitLog(ctx, "Everything is ready", 60*time.Second); err != nil {
		_ = pr.stop(10 * time.Second)
		return nil, err
	}
	if err := waitPort(listen, 30*time.Second); err != nil {
		_ = pr.stop(10 * time.Second)
		return nil, err
	}
	return &collector{proc: pr, endpoint: listen}, nil
}

func (c *collector) stop() { _ = c.proc.stop(15 * time.Second) }

// waitSpans waits until the sink has counted want spans or its count has
// not moved for settle (what the collector still batches arrives within
// its batch timeout), and returns the count.
func waitSpans(sk *sink, want uint64, settle, timeout time.Duration) uint64 {
	deadline := time.Now().Add(timeout)
	last, since := sk.spans.Load(), time.Now()
	for time.Now().Before(deadline) && last < want {
		time.Sleep(50 * time.Millisecond)
		if n := sk.spans.Load(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= settle {
			break
		}
	}
	return sk.spans.Load()
}
