package collectortest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Environment variables that config/collector/e2e.yaml reads its endpoints from.
const (
	// EnvListen names the host:port the collector's OTLP gRPC receiver listens on.
	EnvListen = "ROUTERSCOPE_OTELCOL_LISTEN"
	// EnvExport names the host:port the collector's OTLP exporter sends to (plaintext gRPC).
	EnvExport = "ROUTERSCOPE_OTELCOL_EXPORT"
)

// Paths relative to the repository root.
const (
	buildScript = "scripts/build-collector.sh"
	e2eConfig   = "config/collector/e2e.yaml"
	modulePath  = "github.com/routerscope/routerscope"
)

// Bounds on waiting for the collector. They are generous because the machines that run
// these tests are small and shared; a healthy collector starts in well under a second.
const (
	readyTimeout = 60 * time.Second
	stopTimeout  = 15 * time.Second
	pollInterval = 50 * time.Millisecond
	// outputLimit bounds the collector output kept for failure reports; the debug
	// exporter prints every batch, and only the latest part explains a failure.
	outputLimit = 64 << 10
)

// ErrExited is returned when the collector process ends before it is ready or before
// it is asked to stop.
var ErrExited = errors.New("collector exited")

// ErrNotReady is returned when the collector is running but its OTLP port does not accept
// connections within the wait bound.
var ErrNotReady = errors.New("collector not ready")

// Start builds the collector if needed, starts it with config/collector/e2e.yaml receiving
// OTLP gRPC on listenEndpoint and exporting to exportEndpoint, and returns once
// listenEndpoint accepts connections. The returned stop sends SIGTERM and waits for the
// collector to exit; it is idempotent and also registered with t.Cleanup. When the test
// fails, the collector's output is logged. Start the receiver behind exportEndpoint first:
// cleanups run last-in first-out, so the collector then stops (and flushes) before it.
func Start(t testing.TB, listenEndpoint, exportEndpoint string) (stop func()) {
	t.Helper()
	root := repoRoot(t)
	bin := Binary(t)
	c, err := launch(bin, filepath.Join(root, e2eConfig), listenEndpoint, exportEndpoint)
	if err != nil {
		t.Fatalf("start collector: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if err := c.stop(); err != nil {
				t.Errorf("stop collector: %v", err)
			}
			if t.Failed() {
				t.Logf("collector output (last %d bytes kept):\n%s", outputLimit, c.output())
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// Binary returns the path of the collector binary, running scripts/build-collector.sh
// (which returns at once when the cached build is current). A build that does not succeed
// fails the test with the script's output: CI must build the collector, so there is no skip.
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := build(repoRoot(t))
	if err != nil {
		t.Fatalf("build collector: %v", err)
	}
	return bin
}

// FreeEndpoint returns a loopback host:port that was free a moment ago, for a collector
// to listen on. Another process may take it before the collector binds; Start then fails
// with the collector's "address already in use" rather than hanging.
func FreeEndpoint(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free loopback port: %v", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatalf("release loopback port %s: %v", addr, err)
	}
	return addr
}

// build runs the build script and returns the binary path it prints as its last line.
func build(root string) (string, error) {
	script := filepath.Join(root, buildScript)
	cmd := exec.Command("bash", script)
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("run %s: %w\n%s%s", buildScript, err, stderr.String(), stdout.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	bin := lines[len(lines)-1]
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("%s printed %q, which is not a binary: %w\n%s", buildScript, bin, err, stderr.String())
	}
	return bin, nil
}

// repoRoot walks up from the working directory (a package directory under `go test`) to
// the directory holding routerscope's go.mod.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("find repository root: %v", err)
	}
	for {
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(mod), []byte("module "+modulePath+"\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("find repository root: no go.mod for %s above the working directory; run the test with go test inside the repository", modulePath)
		}
		dir = parent
	}
}

// collector is one running collector process.
type collector struct {
	cmd    *exec.Cmd
	out    *tailBuffer
	done   chan struct{} // closed when the process has been waited for
	err    error         // the Wait result, readable after done is closed
	listen string
}

// launch starts bin with the config at configPath and waits until listen accepts TCP
// connections. On error the process is gone.
func launch(bin, configPath, listen, export string) (*collector, error) {
	if _, _, err := net.SplitHostPort(listen); err != nil {
		return nil, fmt.Errorf("listen endpoint %q is not host:port: %w", listen, err)
	}
	if _, _, err := net.SplitHostPort(export); err != nil {
		return nil, fmt.Errorf("export endpoint %q is not host:port: %w", export, err)
	}
	out := &tailBuffer{limit: outputLimit}
	cmd := exec.Command(bin, "--config", configPath)
	cmd.Env = append(os.Environ(), EnvListen+"="+listen, EnvExport+"="+export)
	cmd.Stdout = out
	cmd.Stderr = out
	// A test binary killed by its timeout must not leave a collector holding the port.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	c := &collector{cmd: cmd, out: out, done: make(chan struct{}), listen: listen}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	if err := c.waitReady(); err != nil {
		_ = c.kill()
		return nil, err
	}
	return c, nil
}

// readyLine is what the collector logs once every pipeline has started (pinned by the
// builder manifest's v0.162.0). Waiting for it, not only for the port, matters: a port held
// by another process also accepts connections, while this collector fails to bind and exits.
const readyLine = "Everything is ready"

// waitReady waits for the collector's ready log line and then for its OTLP port to accept
// a connection, failing early when the process exits (a bad config or a port in use).
func (c *collector) waitReady() error {
	deadline := time.Now().Add(readyTimeout)
	for {
		logged := strings.Contains(c.output(), readyLine)
		dialErr := errors.New("not tried before the ready line")
		if logged {
			var conn net.Conn
			if conn, dialErr = net.DialTimeout("tcp", c.listen, time.Second); dialErr == nil {
				_ = conn.Close()
				return nil
			}
		}
		select {
		case <-c.done:
			return fmt.Errorf("%w before it was ready on %s (%v); its output:\n%s", ErrExited, c.listen, c.err, c.output())
		case <-time.After(pollInterval):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w within %v (ready line %q logged: %v; dial %s: %v); its output:\n%s",
				ErrNotReady, readyTimeout, readyLine, logged, c.listen, dialErr, c.output())
		}
	}
}

// stop asks the collector to shut down (it flushes its pipeline on SIGTERM) and kills it
// if it does not exit in time. A collector that had already exited is reported.
func (c *collector) stop() error {
	select {
	case <-c.done:
		return fmt.Errorf("%w while the test was running (%v); its output:\n%s", ErrExited, c.err, c.output())
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("send SIGTERM to collector pid %d: %w", c.cmd.Process.Pid, err)
	}
	select {
	case <-c.done:
		if c.err != nil {
			return fmt.Errorf("collector exit after SIGTERM: %w; its output:\n%s", c.err, c.output())
		}
		return nil
	case <-time.After(stopTimeout):
		_ = c.kill()
		return fmt.Errorf("collector pid %d still running %v after SIGTERM, killed it; its output:\n%s", c.cmd.Process.Pid, stopTimeout, c.output())
	}
}

// kill ends the process at once and waits for it.
func (c *collector) kill() error {
	err := c.cmd.Process.Kill()
	<-c.done
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// output returns the latest part of the collector's stdout and stderr.
func (c *collector) output() string {
	return c.out.String()
}

// tailBuffer keeps the last limit bytes written to it; exec writes to it from its own
// goroutines while tests read it.
type tailBuffer struct {
	mu    sync.Mutex
	buf   []byte
	limit int
}

// Write appends p, dropping the oldest bytes beyond the limit.
func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.limit; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

// String returns the kept bytes.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
