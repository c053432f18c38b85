package bpf

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"
)

// TestLoadPropagation loads the injector with its inject_tids and
// trace_states maps replaced by the capture object's, as package probes
// does, so the verifier checks the socket programs and the two objects
// agree on the shared maps.
func TestLoadPropagation(t *testing.T) {
	capture := loadCapture(t)
	wantLoaded(t, map[string]*ebpf.Program{
		"uprobe_header_line":      capture.UprobeHeaderLine,
		"uprobe_header_block":     capture.UprobeHeaderBlock,
		"uprobe_client_roundtrip": capture.UprobeClientRoundtrip,
		"uprobe_conn_write":       capture.UprobeConnWrite,
	})
	var inject InjectObjects
	err := LoadInjectObjects(&inject, &ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{"inject_tids": capture.InjectTids, "trace_states": capture.TraceStates},
	})
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		t.Fatalf("verifier rejected a socket program: %+v", verr)
	}
	if err != nil {
		t.Fatalf("load inject objects with the capture object's inject_tids: %v", err)
	}
	defer inject.Close()
	if inject.SockopsTrack == nil || inject.SkmsgInject == nil {
		t.Fatal("socket programs not loaded")
	}
}
