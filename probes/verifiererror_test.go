package probes

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

func TestVerifierErrorWrapped(t *testing.T) {
	log := []string{"0: R1=ctx() R10=fp0", "1: (85) call bpf_probe_read_user#112", "invalid indirect read from stack"}
	verr := &ebpf.VerifierError{Cause: os.ErrPermission, Log: log}
	load := fmt.Errorf("program uprobe_entry: %w", verr)
	err := withVerifierLog("load the capture programs", load)
	if err == nil {
		t.Fatal("a verifier error was not recognised")
	}
	var got *ebpf.VerifierError
	if !errors.As(err, &got) || got != verr {
		t.Fatalf("errors.As does not find the *ebpf.VerifierError in %v", err)
	}
	if !errors.Is(err, os.ErrPermission) {
		t.Error("errors.Is does not find the verifier error's cause")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "load the capture programs: ") {
		t.Errorf("message %q does not say what was being done", msg)
	}
	for _, line := range log {
		if !strings.Contains(msg, line) {
			t.Errorf("message %q lacks the verifier log line %q", msg, line)
		}
	}
	if withVerifierLog("load", errors.New("no such map")) != nil {
		t.Error("an error without a verifier log was taken for one")
	}
}
