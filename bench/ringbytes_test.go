package main

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/routerscope/routerscope/internal/testenv"
)

// TestRingBytes writes records of known sizes into a ring buffer made
// after the mark and reads its producer position back.
func TestRingBytes(t *testing.T) {
	testenv.RequireRoot(t, "creating eBPF maps and programs")
	since := lastMapID()
	ring, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 1 << 14})
	if err != nil {
		t.Fatal(err)
	}
	defer ring.Close()
	other, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	// bpf_ringbuf_output(ring, stack - 16, 12, 0): a 12-byte record, which
	// takes 8 (header) + 12 rounded up to 8 = 24 bytes.
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.SocketFilter, License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R1, 0),
			asm.StoreMem(asm.RFP, -16, asm.R1, asm.DWord),
			asm.StoreMem(asm.RFP, -8, asm.R1, asm.DWord),
			asm.LoadMapPtr(asm.R1, ring.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -16),
			asm.Mov.Imm(asm.R3, 12),
			asm.Mov.Imm(asm.R4, 0),
			asm.FnRingbufOutput.Call(),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	// Other tests on the machine may make ring buffers meanwhile: the
	// exact figures are this ring's, the sum is at least them.
	if got, err := producerPos(ring); err != nil || got != 0 {
		t.Fatalf("empty ring: %d bytes, %v", got, err)
	}
	for range 3 {
		if _, err := prog.Run(&ebpf.RunOptions{Data: make([]byte, 14)}); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := producerPos(ring); err != nil || got != 3*24 {
		t.Fatalf("after three 12-byte records: %d bytes, want 72 (%v)", got, err)
	}
	if got, err := producerPos(other); err != nil || got != 0 {
		t.Fatalf("an array map: %d bytes, %v", got, err)
	}
	if got, err := ringBytes(since); err != nil || got < 3*24 {
		t.Fatalf("ring buffers made since the mark: %d bytes, want at least 72 (%v)", got, err)
	}
}
