package bpf

import (
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// TestLoad loads every program and map into the kernel, so the verifier
// checks the committed object.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("loads eBPF programs into the kernel: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("loading eBPF programs needs root (CAP_BPF); run the tests as root")
	}
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
	defer objs.Close()
	for name, p := range map[string]*ebpf.Program{
		"uprobe_entry":           objs.UprobeEntry,
		"uprobe_return":          objs.UprobeReturn,
		"uprobe_newproc1":        objs.UprobeNewproc1,
		"uprobe_newproc1_return": objs.UprobeNewproc1Return,
	} {
		if p == nil || p.FD() < 0 {
			t.Errorf("program %s not loaded", name)
		}
	}
}
