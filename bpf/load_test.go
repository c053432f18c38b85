package bpf

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/routerscope/routerscope/internal/testenv"
)

// loadCapture loads every program and map of the capture object into the
// kernel, skipping where that cannot run, and fails the test with the
// verifier's log when a program is rejected.
func loadCapture(t *testing.T) *CaptureObjects {
	t.Helper()
	testenv.RequireBPF(t, "loading the capture programs into the kernel")
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatalf("remove memlock limit: %v", err)
	}
	var objs CaptureObjects
	err := LoadCaptureObjects(&objs, nil)
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		t.Fatalf("verifier rejected a program: %+v", verr)
	}
	if err != nil {
		t.Fatalf("load capture objects: %v", err)
	}
	t.Cleanup(func() { objs.Close() })
	return &objs
}

// wantLoaded fails for every program that did not load.
func wantLoaded(t *testing.T, progs map[string]*ebpf.Program) {
	t.Helper()
	for name, p := range progs {
		if p == nil || p.FD() < 0 {
			t.Errorf("program %s not loaded", name)
		}
	}
}

// TestLoad loads every program and map into the kernel, so the verifier
// checks the committed object.
func TestLoad(t *testing.T) {
	objs := loadCapture(t)
	wantLoaded(t, map[string]*ebpf.Program{
		"uprobe_entry":           objs.UprobeEntry,
		"uprobe_return":          objs.UprobeReturn,
		"uprobe_newproc1":        objs.UprobeNewproc1,
		"uprobe_newproc1_return": objs.UprobeNewproc1Return,
	})
}
