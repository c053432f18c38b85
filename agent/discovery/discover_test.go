package discovery

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/routerscope/routerscope/agent/config"
)

func TestFindProcesses(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pids, err := FindProcesses("/proc", self)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range pids {
		found = found || p == os.Getpid()
	}
	if !found {
		t.Fatalf("this process (%d) not found among %v running %s", os.Getpid(), pids, self)
	}
	// Through a symlink: same file, same processes.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(self, link); err != nil {
		t.Fatal(err)
	}
	if viaLink, err := FindProcesses("/proc", link); err != nil || len(viaLink) != len(pids) {
		t.Fatalf("via symlink: %v %v", viaLink, err)
	}
	// A file no process runs.
	other := filepath.Join(t.TempDir(), "other")
	if err := os.WriteFile(other, []byte("x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if none, err := FindProcesses("/proc", other); err != nil || len(none) != 0 {
		t.Fatalf("unused file: %v %v", none, err)
	}
	if _, err := FindProcesses("/proc", "/nonexistent/router"); err == nil {
		t.Fatal("missing binary accepted")
	}
	_, err = ExpandTargets("/proc", []config.Target{{Binary: other}})
	if !errors.Is(err, ErrNoProcess) || !strings.Contains(err.Error(), other) {
		t.Fatalf("binary not running: %v", err)
	}
	got, err := ExpandTargets("/proc", []config.Target{{PID: 7}, {Binary: self}})
	if err != nil || len(got) != 1+len(pids) || got[0].PID != 7 || got[1].Binary != self || got[1].PID == 0 {
		t.Fatalf("expanded %v %v", got, err)
	}
}
