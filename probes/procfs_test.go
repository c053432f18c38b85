package probes

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestExePathSelf(t *testing.T) {
	got, err := ExePath(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join("/proc", strconv.Itoa(os.Getpid()), "root", self)
	if got != want {
		t.Errorf("ExePath(self) = %q, want %q", got, want)
	}
	a, errA := os.Stat(got)
	b, errB := os.Stat(self)
	if errA != nil || errB != nil || !os.SameFile(a, b) {
		t.Errorf("ExePath(self) = %q is not the test binary (%v, %v)", got, errA, errB)
	}
}

func TestExePathGone(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("no `true` command to create a finished process: %v", err)
	}
	// The pid of a reaped child is free (reuse within this test is
	// unlikely but possible, so only the content is checked when it fails).
	_, err := ExePath(cmd.Process.Pid)
	if err == nil {
		t.Skipf("pid %d was reused", cmd.Process.Pid)
	}
	if !strings.Contains(err.Error(), "process is gone") {
		t.Errorf("ExePath(reaped) = %v, want 'process is gone'", err)
	}
	if _, err := ExePath(0); err == nil {
		t.Error("ExePath(0) succeeded")
	}
}
