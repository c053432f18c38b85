package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunPIDEndsWhenTargetExits is `run --pid` whose target is killed
// mid-request while its capture keeps running (the capture engine's Read
// does not end on the target's exit): Run returns, and the open spans end
// at the exit, not at the next liveness sweep (an hour away here).
func TestRunPIDEndsWhenTargetExits(t *testing.T) {
	proc := startCopy(t, filepath.Join(t.TempDir(), "bin", "target"))
	pid := proc.Process.Pid
	var out bytes.Buffer
	cfg := DefaultConfig()
	cfg.Agent.Targets = []Target{{PID: pid}}
	cfg.Agent.Probes = []string{"p.yaml"}
	src := newChanSource() // never ends on its own
	log, logs := observedLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := runAsync(ctx, cfg, func(context.Context, AttachRequest) (EventSource, error) { return src, nil }, log,
		WithStdout(&out), withSweepInterval(time.Hour))
	start := time.Now()
	evs := request(uint32(pid), 1, start)
	src.ch <- evs[0]
	src.ch <- evs[1]
	time.Sleep(20 * time.Millisecond)
	killed := time.Now()
	stopProcess(proc)

	done := make(chan error, 1)
	go func() { done <- wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run still running 20 s after its only target exited")
	}
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
		if !strings.Contains(s.Status.Description, ReasonProcessExited) {
			t.Errorf("%s ended %q", s.Name, s.Status.Description)
		}
		// Ended when the exit was seen: the 20 ms the request ran, plus
		// the time to notice, far less than a sweep interval.
		if s.EndTime.Before(killed) || s.EndTime.Sub(killed) > 2*time.Second {
			t.Errorf("%s ended %v after the kill (ran %v)", s.Name, s.EndTime.Sub(killed), s.EndTime.Sub(s.StartTime))
		}
	}
	if n != 2 {
		t.Errorf("%d spans, want 2:\n%s", n, out.String())
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
	a := &attachment{key: procKey{pid: cmd.Process.Pid}}
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
