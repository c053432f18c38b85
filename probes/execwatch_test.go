package probes

import (
	"errors"
	"os/exec"
	"testing"
	"time"

	"github.com/routerscope/routerscope/internal/testenv"
)

// TestExecWatcher runs a program and waits for the watcher to report its
// exec with its pid; Close then ends a pending Wait, and is idempotent.
func TestExecWatcher(t *testing.T) {
	testenv.RequireBPF(t, "attaching the exec raw tracepoint")
	w, err := NewExecWatcher(0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	pids := make(chan uint32, 64)
	done := make(chan error, 1)
	go func() {
		for {
			pid, err := w.Wait()
			if err != nil {
				done <- err
				return
			}
			select {
			case pids <- pid:
			default:
			}
		}
	}()
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	want := uint32(cmd.Process.Pid)
	timeout := time.After(5 * time.Second)
	for found := false; !found; {
		select {
		case pid := <-pids:
			found = pid == want
		case <-timeout:
			t.Fatalf("no exec record for pid %d within 5 s", want)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Wait after Close returned %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a pending Wait")
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestExecWatcherGap: with a gap longer than the test, a burst of execs
// gives one record, not one per exec.
func TestExecWatcherGap(t *testing.T) {
	testenv.RequireBPF(t, "attaching the exec raw tracepoint")
	w, err := NewExecWatcher(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for range 5 {
		if err := exec.Command("/bin/true").Run(); err != nil {
			t.Fatal(err)
		}
	}
	// Read without blocking: what the five execs (and any other program
	// on the machine) sent.
	n := 0
	for w.rd.AvailableBytes() > 0 {
		if _, err := w.Wait(); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("%d exec records for a burst of 5 execs within the gap, want 1", n)
	}
}
