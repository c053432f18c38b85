package probes

import (
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/routerscope/routerscope/bpf"
)

// TestLayout checks the offsets the decoder and the descriptor encoder use
// against the BTF of the compiled kernel object, so C and Go cannot drift.
func TestLayout(t *testing.T) {
	spec, err := bpf.LoadCapture()
	if err != nil {
		t.Fatalf("load capture collection spec: %v", err)
	}
	type field struct {
		name string
		off  int
	}
	cases := []struct {
		strct  string
		size   int
		fields []field
	}{
		{"fetch_desc", fdLen, []field{
			{"kind", fdKind}, {"size", fdSize}, {"in_regs", fdInRegs}, {"nregs", fdNRegs},
			{"regs", fdRegs}, {"base", fdBase}, {"noffsets", fdNOffsets}, {"offsets", fdOffsets},
		}},
		{"probe_desc", pdLen, []field{
			{"n_entry", pdNEntry}, {"n_return", pdNReturn}, {"parent_id", pdParentID},
			{"has_error", pdHasError}, {"entry", pdEntry}, {"ret", pdReturn}, {"err", pdErr}, {"flags", pdFlags},
		}},
		{"value", valSize, []field{
			{"word", valWord}, {"word2", valWord2}, {"len", valLen}, {"flags", valFlags},
			{"kind", valKind}, {"elem_len", valElemLen}, {"data", valData},
		}},
		{"event", evLen, []field{
			{"kind", evKind}, {"flags", evFlags}, {"n_entry", evNEntry}, {"n_return", evNReturn},
			{"probe_id", evProbeID}, {"pid", evPID}, {"tid", evTID}, {"goroutine", evGoroutine},
			{"start_ns", evStart}, {"end_ns", evEnd}, {"trace_hi", evTraceHi}, {"trace_lo", evTraceLo},
			{"span_id", evSpanID}, {"parent_span_id", evParentSpanID}, {"size", evSize},
			{"entry_len", evEntryLen}, {"has_err", evHasErr},
		}},
		{"entry_vals", entryValsLen, []field{{"len", 0}, {"n", 4}, {"regs", entryValsRegs}, {"data", entryValsData}}},
		{"probe_counters", pcLen, []field{
			{"entries", pcEntries}, {"returns", pcReturns}, {"abandoned", pcAbandoned},
			{"emitted", pcEmitted}, {"overflow", pcOverflow}, {"unmatched", pcUnmatched}, {"skipped", pcSkipped},
		}},
		{"config", cfgLen, []field{{"wakeup_bytes", cfgWakeupBytes}, {"sample_bound", cfgSampleBound}, {"reader_idle", cfgReaderIdle}}},
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
