package probes

import (
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/routerscope/routerscope/bpf"
)

// TestLayout checks the offsets the decoder and the descriptor encoder use
// against the BTF of the compiled kernel object, so C and Go cannot drift.
func TestLayout(t *testing.T) {
	forEachCaptureObject(t, checkLayout)
}

// forEachCaptureObject runs check on the BTF of each committed capture
// object: amd64's and arm64's (the agent loads whichever its host runs;
// its BTF reads the same on any host).
func forEachCaptureObject(t *testing.T, check func(*testing.T, *ebpf.CollectionSpec)) {
	amd, err := bpf.LoadCapture()
	if err != nil {
		t.Fatalf("load the amd64 capture object: %v", err)
	}
	arm, err := ebpf.LoadCollectionSpec(filepath.Join("..", "bpf", "capturearm64_arm64_bpfel.o"))
	if err != nil {
		t.Fatalf("load the arm64 capture object: %v", err)
	}
	t.Run("amd64", func(t *testing.T) { check(t, amd) })
	t.Run("arm64", func(t *testing.T) { check(t, arm) })
}

func checkLayout(t *testing.T, spec *ebpf.CollectionSpec) {
	// size is the width the Go side reads or writes the field with.
	type field struct {
		name string
		off  int
		size int
	}
	cases := []struct {
		strct  string
		size   int
		fields []field
	}{
		{"fetch_desc", fdLen, []field{
			{"kind", fdKind, 1}, {"size", fdSize, 1}, {"in_regs", fdInRegs, 1}, {"nregs", fdNRegs, 1},
			{"regs", fdRegs, len(Location{}.Regs)}, {"base", fdBase, 1}, {"noffsets", fdNOffsets, 1},
			{"offsets", fdOffsets, 8 * MaxOffsets},
		}},
		{"probe_desc", pdLen, []field{
			{"n_entry", pdNEntry, 4}, {"n_return", pdNReturn, 4}, {"parent_id", pdParentID, 4},
			{"has_error", pdHasError, 4}, {"entry", pdEntry, MaxFetches * fdLen}, {"ret", pdReturn, MaxFetches * fdLen},
			{"err", pdErr, fdLen}, {"flags", pdFlags, 4},
		}},
		{"value", valSize, []field{
			{"word", valWord, 8}, {"word2", valWord2, 8}, {"len", valLen, 2}, {"flags", valFlags, 1},
			{"kind", valKind, 1}, {"elem_len", valElemLen, MaxListElems}, {"data", valData, valDataLen},
		}},
		{"event", evLen, []field{
			{"kind", evKind, 1}, {"flags", evFlags, 1}, {"n_entry", evNEntry, 1}, {"n_return", evNReturn, 1},
			{"probe_id", evProbeID, 4}, {"pid", evPID, 4}, {"tid", evTID, 4}, {"goroutine", evGoroutine, 8},
			{"start_ns", evStart, 8}, {"end_ns", evEnd, 8}, {"trace_hi", evTraceHi, 8}, {"trace_lo", evTraceLo, 8},
			{"span_id", evSpanID, 8}, {"parent_span_id", evParentSpanID, 8}, {"size", evSize, 2},
			{"entry_len", evEntryLen, 2}, {"has_err", evHasErr, 1},
		}},
		{"entry_vals", entryValsLen, []field{
			{"len", entryValsLenOff, 4}, {"n", entryValsNOff, 4}, {"regs", entryValsRegs, int(NumRegs) * 8},
			{"data", entryValsData, MaxFetches * valSize},
		}},
		// entry_small is entry_vals cut short: takeEntryValues reads
		// either through entry_vals' offsets.
		{"entry_small", entryValsData + entrySmallMax, []field{
			{"len", entryValsLenOff, 4}, {"n", entryValsNOff, 4}, {"regs", entryValsRegs, int(NumRegs) * 8},
			{"data", entryValsData, entrySmallMax},
		}},
		{"probe_counters", pcLen, []field{
			{"entries", pcEntries, 8}, {"returns", pcReturns, 8}, {"abandoned", pcAbandoned, 8},
			{"emitted", pcEmitted, 8}, {"overflow", pcOverflow, 8}, {"unmatched", pcUnmatched, 8}, {"skipped", pcSkipped, 8},
			{"end_at", pcEndAt, 8},
		}},
		{"config", cfgLen, []field{{"wakeup_bytes", cfgWakeupBytes, 8}, {"sample_bound", cfgSampleBound, 8}, {"reader_idle", cfgReaderIdle, 8}}},
	}
	for _, c := range cases {
		var s *btf.Struct
		if err := spec.Types.TypeByName(c.strct, &s); err != nil {
			t.Errorf("struct %s in the object's BTF: %v", c.strct, err)
			continue
		}
		if int(s.Size) != c.size {
			t.Errorf("sizeof(struct %s) = %d in C, %d in Go", c.strct, s.Size, c.size)
		}
		members := map[string]btf.Member{}
		for _, m := range s.Members {
			members[m.Name] = m
		}
		for _, f := range c.fields {
			m, ok := members[f.name]
			if !ok {
				t.Errorf("struct %s has no field %s", c.strct, f.name)
				continue
			}
			if got := int(m.Offset.Bytes()); got != f.off {
				t.Errorf("offsetof(struct %s, %s) = %d in C, %d in Go", c.strct, f.name, got, f.off)
			}
			if got, err := btf.Sizeof(m.Type); err != nil || got != f.size {
				t.Errorf("sizeof(struct %s.%s) = %d (%v) in C, %d in Go", c.strct, f.name, got, err, f.size)
			}
		}
	}

	// Array bounds the Go side relies on.
	var v *btf.Struct
	if err := spec.Types.TypeByName("value", &v); err == nil {
		for _, m := range v.Members {
			if m.Name == "data" {
				if n, _ := btf.Sizeof(m.Type); n != valDataLen || valDataLen < MaxStringBytes || valDataLen != MaxListElems*MaxElemBytes {
					t.Errorf("value.data is %d bytes in C, %d in Go", n, valDataLen)
				}
			}
		}
	}
	// recordMax is RECORD_MAX's formula over checked sizes; the kernel
	// builds a record in struct scratch, which must hold it and one value.
	var scratch *btf.Struct
	if err := spec.Types.TypeByName("scratch", &scratch); err != nil || int(scratch.Size) < recordMax+valSize {
		t.Errorf("struct scratch (%v, %v) cannot hold a record of %d bytes and one value", scratch, err, recordMax)
	}
	var ss *btf.Struct
	if err := spec.Types.TypeByName("span_stack", &ss); err != nil {
		t.Fatalf("struct span_stack: %v", err)
	}
	for _, m := range ss.Members {
		if a, ok := m.Type.(*btf.Array); ok && int(a.Nelems) != MaxDepth {
			t.Errorf("span_stack.e has %d entries in C, MaxDepth is %d", a.Nelems, MaxDepth)
		}
	}
	if ms := spec.Maps["descs"]; ms == nil || int(ms.MaxEntries) != MaxProbes {
		t.Errorf("descs map missing or not %d entries", MaxProbes)
	}
}
