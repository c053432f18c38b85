package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/routerscope/routerscope/agent"
	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/internal/testenv"
	"github.com/routerscope/routerscope/probes"
)

// holdSource is a capture that delivers nothing until it is closed.
type holdSource struct {
	closed chan struct{}
	once   sync.Once
}

func (s *holdSource) Read(ctx context.Context) (probes.Event, error) {
	select {
	case <-ctx.Done():
		return probes.Event{}, ctx.Err()
	case <-s.closed:
		return probes.Event{}, errEnded
	}
}
func (s *holdSource) Lost() uint64 { return 0 }
func (s *holdSource) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

// TestRunDiscoveryServesMetricsAndReloadsOnSIGHUP runs the command with a
// discovery config: it serves the metrics endpoints, attaches to the
// matching process, and on SIGHUP reloads the file while keeping the
// flags' overrides (--probes).
func TestRunDiscoveryServesMetricsAndReloadsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	router := testenv.CopyExecutable(t, "/bin/sleep", filepath.Join(dir, "router"))
	proc := exec.Command(router, "300")
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = proc.Process.Kill(); _ = proc.Wait() }()
	flagProbe := writeFile(t, "flag.yaml", "probes:\n  - {symbol: main.main, span: main}\n")
	configDoc := func(rate string) string {
		return fmt.Sprintf(`observability:
  tracing:
    enabled: true
    exporter: {type: stdout}
    sampling: {type: probabilistic, rate: %s}
routerscope:
  watch_interval: 0s
  probes: [file.yaml]
  discovery:
    interval: 20ms
    rules:
      - {name: router, executable: %q}
`, rate, router)
	}
	cfgPath := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfgPath, []byte(configDoc("0.5")), 0o600); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var reqs []agent.AttachRequest
	attach := func(config.Kernel) (captureEngine, error) {
		return captureEngine{close: func() error { return nil }, attach: func(_ context.Context, req agent.AttachRequest) (agent.EventSource, error) {
			mu.Lock()
			defer mu.Unlock()
			reqs = append(reqs, req)
			return &holdSource{closed: make(chan struct{})}, nil
		}}, nil
	}
	requests := func() []agent.AttachRequest {
		mu.Lock()
		defer mu.Unlock()
		return append([]agent.AttachRequest(nil), reqs...)
	}
	c, _, errOut := newCLI(nil, attach)
	var addr string
	var listenedOn []string
	var lmu sync.Mutex
	c.listen = func(a string) (net.Listener, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		lmu.Lock()
		defer lmu.Unlock()
		listenedOn = append(listenedOn, a)
		if err == nil {
			addr = ln.Addr().String()
		}
		return ln, err
	}
	hup := make(chan os.Signal, 1)
	c.hup = hup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- c.main(ctx, []string{"run", "--config", cfgPath, "--probes", flagProbe, "--metrics-listen", "127.0.0.1:19464"})
	}()
	testenv.Eventually(t, "attached", func() bool { return len(requests()) == 1 })
	if r := requests()[0]; r.Target.PID != proc.Process.Pid || r.SampleRatio != 0.5 || len(r.Probes) != 1 || r.Probes[0] != flagProbe {
		t.Fatalf("request %+v", r)
	}
	lmu.Lock()
	metricsAddr, asked := addr, append([]string(nil), listenedOn...)
	lmu.Unlock()
	if len(asked) != 1 || asked[0] != "127.0.0.1:19464" {
		t.Fatalf("listened on %v, want the --metrics-listen address", asked)
	}
	// The counter moves just after the attacher returns.
	testenv.Eventually(t, "the attach in /metrics", func() bool {
		v, ok := testenv.Metric(testenv.Scrape(t, metricsAddr), "routerscope_attaches_total", "rule=router")
		return ok && v == 1
	})

	// New sampling in the file; SIGHUP: re-attached with it, and still
	// with the --probes file rather than the config's.
	if err := os.WriteFile(cfgPath, []byte(configDoc("0.25")), 0o600); err != nil {
		t.Fatal(err)
	}
	hup <- syscall.SIGHUP
	testenv.Eventually(t, "re-attached after SIGHUP", func() bool { return len(requests()) == 2 })
	if r := requests()[1]; r.SampleRatio != 0.25 || r.Probes[0] != flagProbe {
		t.Fatalf("request after reload %+v", r)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(errOut.String(), "config reloaded") {
		t.Errorf("no reload log: %s", errOut.String())
	}
}

func TestMetricsListenFlag(t *testing.T) {
	// "" turns the server off: nothing is listened on.
	c, _, errOut := newCLI(nil, fakeAttacher(new(agent.AttachRequest)))
	// The made-up PID 4242 may exist: neither its config nor its procfs
	// entry is read.
	c.proc = t.TempDir()
	c.listen = func(a string) (net.Listener, error) {
		t.Errorf("listened on %q with --metrics-listen \"\"", a)
		return nil, fmt.Errorf("unexpected")
	}
	if code := c.main(context.Background(), []string{"run", "--pid", "4242", "--probes", "p.yaml", "--metrics-listen", ""}); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	// A busy address is a runtime error naming the key and the flag.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	c, _, errOut = newCLI(nil, fakeAttacher(new(agent.AttachRequest)))
	c.proc = t.TempDir()
	c.listen = func(a string) (net.Listener, error) { return net.Listen("tcp", a) }
	code := c.main(context.Background(), []string{"run", "--pid", "4242", "--probes", "p.yaml", "--metrics-listen", busy.Addr().String()})
	if code != exitRuntime || !strings.Contains(errOut.String(), "--metrics-listen") || !strings.Contains(errOut.String(), "address already in use") {
		t.Fatalf("busy address: exit %d %s", code, errOut.String())
	}
}
