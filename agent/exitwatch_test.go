package agent

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/agent/discovery"
	"github.com/routerscope/routerscope/agent/spans"
	"github.com/routerscope/routerscope/agent/spans/spantest"
	"github.com/routerscope/routerscope/internal/testenv"
	"github.com/routerscope/routerscope/probes"
)

// TestRunPIDEndsWhenTargetExits is `run --pid` whose target is killed
// mid-request while its capture keeps running (the capture engine's Read
// does not end on the target's exit): Run returns, and the open spans end
// at the exit, not at the next liveness sweep (an hour away here).
func TestRunPIDEndsWhenTargetExits(t *testing.T) {
	proc := startCopy(t, filepath.Join(t.TempDir(), "bin", "target"))
	pid := proc.Process.Pid
	var out bytes.Buffer
	cfg := config.DefaultConfig()
	cfg.Agent.Targets = []config.Target{{PID: pid}}
	cfg.Agent.Probes = []string{"p.yaml"}
	src := newChanSource() // never ends on its own
	log, logs := observedLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := runAsync(ctx, cfg, func(context.Context, AttachRequest) (EventSource, error) { return src, nil }, log,
		WithStdout(&out), withSweepInterval(time.Hour))
	start := time.Now()
	evs := spantest.Request(uint32(pid), 1, start)
	src.ch <- evs[0]
	src.ch <- evs[1]
	src.handled(t, 2) // both spans are open in the agent before the kill
	killed := time.Now()
	stopProcess(proc)

	runEnds(t, wait, 20*time.Second, "its only target exited")
	if logs.FilterMessage("process exited: ended its open spans as failed").Len() != 1 {
		t.Errorf("no exit log: %v", logs.All())
	}
	dec := json.NewDecoder(&out)
	n := 0
	for dec.More() {
		var s struct {
			Name               string
			StartTime, EndTime time.Time
			Status             struct{ Description string }
		}
		if err := dec.Decode(&s); err != nil {
			t.Fatal(err)
		}
		n++
		if !strings.Contains(s.Status.Description, spans.ReasonProcessExited) {
			t.Errorf("%s ended %q", s.Name, s.Status.Description)
		}
		// Ended when the exit was seen: the time to notice, far less than
		// a sweep interval.
		if s.EndTime.Before(killed) || s.EndTime.Sub(killed) > 2*time.Second {
			t.Errorf("%s ended %v after the kill (ran %v)", s.Name, s.EndTime.Sub(killed), s.EndTime.Sub(s.StartTime))
		}
	}
	if n != 2 {
		t.Errorf("%d spans, want 2:\n%s", n, out.String())
	}
}

// keptSource is a capture whose open spans stay in the kernel, as the
// capture engine's do: they never come through Read, only through
// TakeOpenSpans, which hands them over once.
type keptSource struct {
	*chanSource
	mu    sync.Mutex
	open  []probes.Event
	takes int
}

func (s *keptSource) TakeOpenSpans() ([]probes.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.takes++
	evs := s.open
	s.open = nil
	return evs, nil
}

// TestExitEndsKernelOpenSpans: the target is killed with -9 while its
// request's root and a child are open in the kernel (nothing of them was
// read): when the exit is noticed both are taken from the capture and
// exported, failed, ended at the exit, with their ids and parent link.
func TestExitEndsKernelOpenSpans(t *testing.T) {
	proc := startCopy(t, filepath.Join(t.TempDir(), "bin", "target"))
	pid := proc.Process.Pid
	var out bytes.Buffer
	cfg := config.DefaultConfig()
	cfg.Agent.Targets = []config.Target{{PID: pid}}
	cfg.Agent.Probes = []string{"p.yaml"}
	start := time.Now()
	evs := spantest.Request(uint32(pid), 3, start)
	src := &keptSource{chanSource: newChanSource(), open: []probes.Event{evs[0], evs[1]}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := runAsync(ctx, cfg, func(context.Context, AttachRequest) (EventSource, error) { return src, nil }, zap.NewNop(),
		WithStdout(&out), withSweepInterval(time.Hour))
	src.handled(t, 0) // attached and reading before the kill
	killed := time.Now()
	stopProcess(proc)
	runEnds(t, wait, 20*time.Second, "its only target exited")
	if src.takes == 0 {
		t.Fatal("the open spans were never taken from the capture")
	}
	raw := out.String()
	type spanCtx struct{ TraceID, SpanID string }
	type span struct {
		Name                string
		SpanContext, Parent spanCtx
		StartTime, EndTime  time.Time
		Status              struct{ Code, Description string }
	}
	got := map[string]span{}
	dec := json.NewDecoder(&out)
	for dec.More() {
		var s span
		if err := dec.Decode(&s); err != nil {
			t.Fatal(err)
		}
		got[s.SpanContext.SpanID] = s
		if s.Status.Code != "Error" || !strings.Contains(s.Status.Description, spans.ReasonProcessExited) {
			t.Errorf("%s: status %+v, want failed: %s", s.Name, s.Status, spans.ReasonProcessExited)
		}
		if s.EndTime.Before(killed) || s.EndTime.Sub(killed) > 2*time.Second {
			t.Errorf("%s ended %v after the kill", s.Name, s.EndTime.Sub(killed))
		}
	}
	root, child := hex.EncodeToString(evs[0].SpanID[:]), hex.EncodeToString(evs[1].SpanID[:])
	if len(got) != 2 || got[root].Name == "" || got[child].Name == "" {
		t.Fatalf("spans %v, want %s and %s:\n%s", got, root, child, raw)
	}
	if got[root].Parent.SpanID != "0000000000000000" || got[child].Parent.SpanID != root {
		t.Errorf("parents: root %q, child %q (want %q)", got[root].Parent.SpanID, got[child].Parent.SpanID, root)
	}
	if got[root].SpanContext.TraceID != hex.EncodeToString(evs[0].TraceID[:]) || got[child].SpanContext.TraceID != got[root].SpanContext.TraceID {
		t.Errorf("trace ids %s %s", got[root].SpanContext.TraceID, got[child].SpanContext.TraceID)
	}
}

// TestWatchExitOfAGoneProcess: a target that exited (and was reaped)
// before its exit watcher started is reported at once, not left to the
// next liveness sweep (a second away by default, an hour in the test above).
func TestWatchExitOfAGoneProcess(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	m := &manager{exits: make(chan exitNotice, 1), o: runOptions{alive: processAlive, now: time.Now, procRoot: "/proc"}}
	a := &attachment{key: discovery.Key{PID: cmd.Process.Pid}}
	m.watchExit(context.Background(), a)
	select {
	case n := <-m.exits:
		if n.a != a {
			t.Errorf("exit of %+v, want %+v", n.a.key, a.key)
		}
	default:
		t.Fatal("the exit of a reaped process was not reported")
	}
}

// TestWatchExitWaitsInPoller: a live process's pidfd is handed to the
// runtime's poller (exitWatched, so the sweep does not poll it), the
// wait ends when the context does, and a second watcher reports the
// process's exit.
func TestWatchExitWaitsInPoller(t *testing.T) {
	proc := startCopy(t, filepath.Join(t.TempDir(), "bin", "target"))
	m := &manager{o: runOptions{alive: processAlive, now: time.Now, procRoot: "/proc"},
		exits: make(chan exitNotice, 1), wake: make(chan struct{}, 1)}
	a := &attachment{key: discovery.Key{PID: proc.Process.Pid}}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.watchExit(ctx, a)
	}()
	testenv.Eventually(t, "pidfd watched", a.exitWatched.Load)
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("watcher still waiting after its context ended")
	}
	select {
	case x := <-m.exits:
		t.Fatalf("exit reported for a live process: %v", x)
	default:
	}

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	a2 := &attachment{key: a.key}
	go m.watchExit(ctx, a2)
	testenv.Eventually(t, "pidfd watched again", a2.exitWatched.Load)
	killed := time.Now()
	stopProcess(proc)
	select {
	case x := <-m.exits:
		if x.a != a2 || x.at.Before(killed) {
			t.Fatalf("exit notice %+v", x)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("exit not reported")
	}
}
