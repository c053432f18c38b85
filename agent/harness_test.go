package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/routerscope/routerscope/agent/spans/spantest"
	"github.com/routerscope/routerscope/internal/testenv"
	"github.com/routerscope/routerscope/probes"
)

// This file holds the harness of the discovery, metrics and reload tests:
// real short-lived processes (copies of /bin/sleep under a temp path) and
// a synthetic attacher whose captures end when their process exits, as
// the capture engine's do.

// startCopy copies /bin/sleep to path and runs it; the test's cleanup
// kills and reaps it.
func startCopy(t *testing.T, path string) *exec.Cmd {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		testenv.CopyExecutable(t, "/bin/sleep", path)
	}
	cmd := exec.Command(path, "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProcess(cmd) })
	return cmd
}

// stopProcess kills and reaps a process (a zombie would still look alive).
func stopProcess(cmd *exec.Cmd) {
	if cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

var errTargetExited = errors.New("target exited")

// liveSource emits one request of its process, then waits until closed or
// until the process is gone.
type liveSource struct {
	pid    int
	events []probes.Event
	lost   uint64
	closed chan struct{}
	once   sync.Once
}

func (s *liveSource) Read(ctx context.Context) (probes.Event, error) {
	if len(s.events) > 0 {
		ev := s.events[0]
		s.events = s.events[1:]
		return ev, nil
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return probes.Event{}, ctx.Err()
		case <-s.closed:
			return probes.Event{}, errSourceClosed
		case <-t.C:
			if !processAlive(uint32(s.pid)) {
				return probes.Event{}, errTargetExited
			}
		}
	}
}

func (s *liveSource) Lost() uint64 { return s.lost }

func (s *liveSource) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

// capture is a synthetic attacher recording what it was asked.
type capture struct {
	mu   sync.Mutex
	reqs []AttachRequest
	srcs []*liveSource
	// fail, when set, fails attaches it returns an error for.
	fail func(AttachRequest) error
	// source, when set, supplies the capture instead of a liveSource.
	source func(AttachRequest) EventSource
}

func (c *capture) attach(_ context.Context, req AttachRequest) (EventSource, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		if err := c.fail(req); err != nil {
			return nil, err
		}
	}
	c.reqs = append(c.reqs, req)
	if c.source != nil {
		return c.source(req), nil
	}
	n := byte(len(c.reqs))
	src := &liveSource{pid: req.Target.PID, closed: make(chan struct{}), lost: uint64(n),
		events: spantest.Request(uint32(req.Target.PID), n, time.Now())}
	c.srcs = append(c.srcs, src)
	return src, nil
}

// requests returns the attach requests so far.
func (c *capture) requests() []AttachRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]AttachRequest(nil), c.reqs...)
}

// attachedPIDs counts attach requests per PID.
func (c *capture) attachedPIDs() map[int]int {
	out := map[int]int{}
	for _, r := range c.requests() {
		out[r.Target.PID]++
	}
	return out
}

// scanCount counts the agent's discovery ticks (withScanned), so a test
// that checks nothing happens "over several scans" waits for the scans
// rather than sleeping.
type scanCount struct{ n atomic.Int64 }

func (s *scanCount) option() Option { return withScanned(func() { s.n.Add(1) }) }

// wait waits until n more scans than now have run.
func (s *scanCount) wait(t *testing.T, n int64) {
	t.Helper()
	want := s.n.Load() + n
	testenv.Eventually(t, fmt.Sprintf("%d more discovery scans", n), func() bool { return s.n.Load() >= want })
}

// localListener is a metrics listener on a free loopback port.
func localListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// scrape reads the agent's /metrics page.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	return testenv.Scrape(t, addr)
}

// metricValue returns the value of the series of name with the given
// labels ("k=v" pairs), or -1 when there is none.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	if v, ok := testenv.Metric(fams, name, labels...); ok {
		return v
	}
	return -1
}

// writeProbe writes a probe file for configs that name one.
func writeProbe(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func pidString(pid int) string { return fmt.Sprint(pid) }

// observedDiscard is a logger for tests that assert on metrics, not logs.
func observedDiscard() *zap.Logger {
	log, _ := observedLogger()
	return log
}
