package bpf

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// TestCaptureArm64Object checks, on any host, the committed arm64 capture
// object against the amd64 one: the same programs and maps with the same
// types and sizes (the agent loads either into CaptureObjects), the same
// shared structs, and registers read through goregs.h's arm64 layout.
func TestCaptureArm64Object(t *testing.T) {
	arm, err := ebpf.LoadCollectionSpec("capturearm64_arm64_bpfel.o")
	if err != nil {
		t.Fatal(err)
	}
	amd, err := LoadCapture()
	if err != nil {
		t.Fatal(err)
	}
	if len(arm.Programs) != len(amd.Programs) || len(arm.Maps) != len(amd.Maps) {
		t.Fatalf("arm64 object: %d programs %d maps, amd64: %d and %d", len(arm.Programs), len(arm.Maps), len(amd.Programs), len(amd.Maps))
	}
	for name, p := range amd.Programs {
		a, ok := arm.Programs[name]
		if !ok || a.Type != p.Type || a.AttachType != p.AttachType || a.SectionName != p.SectionName {
			t.Errorf("program %s: arm64 %+v, amd64 type %v attach %v section %s", name, a, p.Type, p.AttachType, p.SectionName)
		}
	}
	for name, m := range amd.Maps {
		a, ok := arm.Maps[name]
		if !ok || a.Type != m.Type || a.KeySize != m.KeySize || a.ValueSize != m.ValueSize || a.MaxEntries != m.MaxEntries {
			t.Errorf("map %s: arm64 %+v, amd64 %+v", name, a, m)
		}
	}
	// The structs user space decodes have one layout on both.
	for _, name := range []string{"event", "span_record", "probe_desc", "fetch_desc"} {
		var sa, sm *btf.Struct
		errA := arm.Types.TypeByName(name, &sa)
		errM := amd.Types.TypeByName(name, &sm)
		if errors.Is(errM, btf.ErrNotFound) {
			continue
		}
		if errA != nil || errM != nil || sa.Size != sm.Size || len(sa.Members) != len(sm.Members) {
			t.Errorf("struct %s: arm64 %v (%v), amd64 %v (%v)", name, sa, errA, sm, errM)
		}
	}
	// Registers: g is regs[28] (offset 224) and SP follows regs[31]
	// (offset 248) in arm64's user_pt_regs; amd64's pt_regs has r14 at 8
	// and sp at 152.
	if !loadsAt(arm, 224, 248) {
		t.Errorf("arm64 object does not read g and SP at arm64's offsets")
	}
	if !loadsAt(amd, 8, 152) {
		t.Errorf("amd64 object does not read r14 and sp at amd64's offsets")
	}
}

// loadsAt reports whether some program loads 8-byte words at both offsets,
// as reading g and SP from the uprobe context does.
func loadsAt(spec *ebpf.CollectionSpec, g, sp int16) bool {
	seenG, seenSP := false, false
	for _, p := range spec.Programs {
		for _, in := range p.Instructions {
			if in.OpCode.Class() == asm.LdXClass && in.OpCode.Size() == asm.DWord {
				seenG = seenG || in.Offset == g
				seenSP = seenSP || in.Offset == sp
			}
		}
	}
	return seenG && seenSP
}
