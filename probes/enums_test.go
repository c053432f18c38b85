package probes

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// kernelOnly marks an enumerator user space has no copy of.
const kernelOnly = -1

// TestSharedEnumsMatchBTF checks every enum and flag value the kernel and
// user space share against the compiled capture object's BTF: each
// enumerator of each enum must be listed here, with user space's value or
// kernelOnly, and the values must agree. A value added or changed on one
// side only fails.
func TestSharedEnumsMatchBTF(t *testing.T) {
	forEachCaptureObject(t, checkSharedEnums)
}

func checkSharedEnums(t *testing.T, spec *ebpf.CollectionSpec) {
	shared := map[string]map[string]int64{
		"reg": {
			"REG_RAX": int64(RegRAX), "REG_RBX": int64(RegRBX), "REG_RCX": int64(RegRCX),
			"REG_RDI": int64(RegRDI), "REG_RSI": int64(RegRSI), "REG_R8": int64(RegR8),
			"REG_R9": int64(RegR9), "REG_R10": int64(RegR10), "REG_R11": int64(RegR11),
			"REG_SP": int64(RegSP), "REG_R14": int64(RegR14), "NUM_REGS": int64(NumRegs),
		},
		"value_kind": {
			"KIND_INT": int64(KindInt), "KIND_UINT": int64(KindUint), "KIND_BOOL": int64(KindBool),
			"KIND_FLOAT": int64(KindFloat), "KIND_STRING": int64(KindString),
			"KIND_STRING_SLICE": int64(KindStringSlice), "KIND_ERROR": int64(KindError),
		},
		"event_kind": {
			"EVENT_SPAN": int64(EventSpan), "EVENT_ABANDONED": int64(EventAbandoned),
		},
		"span_flag": {
			"FLAG_SAMPLED": flagSampled, "FLAG_REMOTE_PARENT": flagRemoteParent,
			"FLAG_ENTRY_LOST": flagEntryLost,
			"FLAG_ENTRY_VALS": spanEntryVals, "FLAG_END_NEXT": kernelOnly, "FLAG_ENTRY_SMALL": spanEntrySmall,
		},
		"value_flag": {"VAL_MISSING": valMissing, "VAL_TRUNCATED": valTruncated},
		"desc_flag":  {"DESC_END_NEXT": descEndNext, "DESC_END_FROM_ENTRY": descEndFromEntry},
	}
	for name, want := range shared {
		var e *btf.Enum
		if err := spec.Types.TypeByName(name, &e); err != nil {
			t.Errorf("enum %s in the object's BTF: %v", name, err)
			continue
		}
		seen := map[string]bool{}
		for _, v := range e.Values {
			seen[v.Name] = true
			goVal, ok := want[v.Name]
			switch {
			case !ok:
				t.Errorf("enum %s: %s = %d has no user-space counterpart listed here", name, v.Name, v.Value)
			case goVal != kernelOnly && uint64(goVal) != v.Value:
				t.Errorf("enum %s: %s = %d in C, %d in Go", name, v.Name, v.Value, goVal)
			}
		}
		for n := range want {
			if !seen[n] {
				t.Errorf("enum %s: %s is not in the object's BTF", name, n)
			}
		}
	}
	// Values of one flag enum must be distinct bits.
	for _, name := range []string{"span_flag", "value_flag", "desc_flag"} {
		var e *btf.Enum
		if spec.Types.TypeByName(name, &e) != nil {
			continue
		}
		var all uint64
		for _, v := range e.Values {
			if v.Value == 0 || v.Value&(v.Value-1) != 0 || all&v.Value != 0 {
				t.Errorf("enum %s: %s = %#x is not a bit of its own", name, v.Name, v.Value)
			}
			all |= v.Value
		}
	}
}
