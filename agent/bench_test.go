package agent

import (
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/internal/testenv"
)

// BenchmarkRestartToAttach measures, with the default discovery interval,
// the time from starting a matching process to its attach: the delay a
// restarted router goes untraced (the product promises under 2 s).
func BenchmarkRestartToAttach(b *testing.B) {
	dir := b.TempDir()
	path := testenv.CopyExecutable(b, "/bin/sleep", filepath.Join(dir, "router"))
	cfg := config.DefaultConfig()
	cfg.Agent.Metrics.Listen = ""
	cfg.Agent.Probes = []string{path} // any readable file
	cfg.Agent.Discovery.Rules = []config.Rule{{Name: "router", Selector: config.Selector{Executable: path}}}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	attached := make(chan int, 16)
	attach := func(_ context.Context, req AttachRequest) (EventSource, error) {
		attached <- req.Target.PID
		return &liveSource{pid: req.Target.PID, closed: make(chan struct{})}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, attach, zap.NewNop(), WithStdout(io.Discard)) }()
	var total, worst time.Duration
	for i := 0; b.Loop(); i++ {
		// Start at varying phases of the scan ticker: back-to-back starts
		// would all land just after a scan.
		time.Sleep(time.Duration(i*97%500) * time.Millisecond)
		cmd := exec.Command(path, "300")
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for pid := range attached {
			if pid == cmd.Process.Pid {
				break
			}
		}
		d := time.Since(start)
		total += d
		worst = max(worst, d)
		stopProcess(cmd)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/attach")
	b.ReportMetric(float64(worst.Milliseconds()), "max-ms/attach")
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
