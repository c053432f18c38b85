package probes

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
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

// TestExecWatcherGap: with a gap longer than the test, an exec after the
// first wake-up (the first exec on the machine since the load) does not
// wake the reader; its record is still there, and Flush delivers it.
func TestExecWatcherGap(t *testing.T) {
	testenv.RequireBPF(t, "attaching the exec raw tracepoint")
	w, err := NewExecWatcher(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	pids := make(chan uint32, 1024)
	go func() {
		for {
			pid, err := w.Wait()
			if err != nil {
				return
			}
			pids <- pid
		}
	}()
	run := func() uint32 {
		cmd := exec.Command("/bin/true")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		return uint32(cmd.Process.Pid)
	}
	waitFor := func(want uint32, within time.Duration) bool {
		deadline := time.After(within)
		for {
			select {
			case pid := <-pids:
				if pid == want {
					return true
				}
			case <-deadline:
				return false
			}
		}
	}
	// Another program may have executed first: a flush delivers the
	// record either way.
	first := run()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(first, 5*time.Second) {
		t.Fatalf("no record of the first exec (pid %d)", first)
	}
	second := run()
	if waitFor(second, 300*time.Millisecond) {
		t.Fatalf("an exec within the gap (pid %d) woke the reader", second)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(second, 5*time.Second) {
		t.Fatalf("Flush did not deliver the record of pid %d", second)
	}
	if n := w.Dropped(); n != 0 {
		t.Errorf("%d records dropped from a ring with room", n)
	}
}

// execWatchChildEnv makes the test binary, re-executed in a new PID
// namespace, open a watcher and print the error (TestExecWatcherPIDNamespace).
const execWatchChildEnv = "ROUTERSCOPE_EXECWATCH_CHILD"

// TestExecWatcherPIDNamespace: outside the host's PID namespace the
// watcher refuses to start (its pids would not be the caller's), with
// ErrNotHostPIDNamespace.
func TestExecWatcherPIDNamespace(t *testing.T) {
	if os.Getenv(execWatchChildEnv) != "" {
		w, err := NewExecWatcher(0)
		if err == nil {
			w.Close()
		}
		fmt.Printf("RESULT %v %v\n", errors.Is(err, ErrNotHostPIDNamespace), err)
		return
	}
	testenv.RequireBPF(t, "loading the exec watcher")
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare (util-linux) is needed to run a child in a new PID namespace")
	}
	cmd := exec.Command(unshare, "--pid", "--fork", os.Args[0], "-test.run=^TestExecWatcherPIDNamespace$", "-test.v")
	cmd.Env = append(os.Environ(), execWatchChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "RESULT true") {
		t.Errorf("in a new PID namespace the watcher did not refuse with ErrNotHostPIDNamespace:\n%s", out)
	}
}
