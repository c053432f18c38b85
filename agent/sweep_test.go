package agent

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/agent/spans"
	"github.com/routerscope/routerscope/agent/spans/spantest"
	"github.com/routerscope/routerscope/internal/testenv"
)

// countingSource counts the sweep's Lost reads.
type countingSource struct {
	*chanSource
	mu    sync.Mutex
	reads int
}

func (s *countingSource) Lost() uint64 {
	s.mu.Lock()
	s.reads++
	s.mu.Unlock()
	return s.chanSource.Lost()
}

// TestSweepStopsWhenIdleAndWakesOnEvents: attached to a live process
// whose exit a pidfd watches, with nothing open or queued, the sweep
// stops; an event read afterwards starts it again, and it then does what
// a sweep does: expires the span whose return never came and reports the
// events the kernel lost meanwhile. With a sweep that never stopped, or
// never woke, this fails.
func TestSweepStopsWhenIdleAndWakesOnEvents(t *testing.T) {
	proc := startCopy(t, filepath.Join(t.TempDir(), "bin", "target"))
	pid := proc.Process.Pid
	var out bytes.Buffer
	cfg := config.DefaultConfig()
	cfg.Agent.Targets = []config.Target{{PID: pid}}
	cfg.Agent.Probes = []string{"p.yaml"}
	cfg.Agent.MaxSpanAge = 50 * time.Millisecond
	cfg.Agent.Export.BatchTimeout = 10 * time.Millisecond
	src := &countingSource{chanSource: newChanSource()}
	states := make(chan bool, 16)
	log, logs := observedLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := runAsync(ctx, cfg, func(context.Context, AttachRequest) (EventSource, error) { return src, nil }, log,
		WithStdout(&out), withSweepInterval(5*time.Millisecond),
		withSweepHook(func(running bool) { states <- running }))
	waitState := func(want bool) {
		t.Helper()
		select {
		case got := <-states:
			if got != want {
				t.Fatalf("sweep running=%v, want %v", got, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("sweep never went running=%v", want)
		}
	}
	waitState(false)
	src.mu.Lock()
	idleReads := src.reads
	src.mu.Unlock()

	// The kernel lost events and one entry came through: its return
	// never will.
	src.lost.Store(3)
	src.ch <- spantest.Request(uint32(pid), 1, time.Now())[0]
	waitState(true)
	testenv.Eventually(t, "expired span ended and lost events reported", func() bool {
		return logs.FilterMessage("return events lost: ended expired spans as failed").Len() == 1 &&
			logs.FilterMessage("kernel ring buffer dropped events").Len() == 1
	})
	waitState(false)
	src.mu.Lock()
	if src.reads <= idleReads {
		t.Errorf("no sweep pass after the wake (%d Lost reads, %d when idle)", src.reads, idleReads)
	}
	src.mu.Unlock()
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), spans.ReasonExpired) {
		t.Errorf("span not ended as expired:\n%s", out.String())
	}
}

// TestSweepKeepsPollingUnwatchedProcess: a process whose exit no pidfd
// watches (the pid does not exist for pidfd_open, while the liveness
// check says it runs) keeps the sweep going, so its exit is still seen.
func TestSweepKeepsPollingUnwatchedProcess(t *testing.T) {
	var out bytes.Buffer
	cfg := config.DefaultConfig()
	const pid = 1 << 30 // above pid_max: pidfd_open fails
	cfg.Agent.Targets = []config.Target{{PID: pid}}
	cfg.Agent.Probes = []string{"p.yaml"}
	src := &countingSource{chanSource: newChanSource()}
	var mu sync.Mutex
	alive := true
	stopped := make(chan struct{}, 16)
	log, logs := observedLogger()
	wait := runAsync(context.Background(), cfg, func(context.Context, AttachRequest) (EventSource, error) { return src, nil }, log,
		WithStdout(&out), withSweepInterval(5*time.Millisecond),
		withSweepHook(func(running bool) {
			if !running {
				stopped <- struct{}{}
			}
		}),
		withAlive(func(p uint32) bool {
			mu.Lock()
			defer mu.Unlock()
			return p != pid || alive
		}))
	// Let passes run before the exit: an idle sweep would stop after
	// the second.
	testenv.Eventually(t, "sweep passes", func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		return src.reads >= 4
	})
	if len(stopped) != 0 {
		t.Error("the sweep stopped while a process only polling can watch was attached")
	}
	mu.Lock()
	alive = false
	mu.Unlock()
	runEnds(t, wait, 20*time.Second, "the unwatched target exited")
	if logs.FilterMessage("detached").Len() != 1 {
		t.Errorf("logs: %v", logs.All())
	}
}
