package probes

import (
	"fmt"
	"testing"
	"time"

	"github.com/routerscope/routerscope/bpf"
	"github.com/routerscope/routerscope/internal/testenv"
)

// TestTakeOpenSpansOfKilledProcess kills the fixture with -9 inside a
// request (hold calls stall, which blocks) and checks that both open spans
// come out of the kernel with their ids, parent links and entry values,
// and that their kernel entries are gone afterwards.
func TestTakeOpenSpansOfKilledProcess(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	s := newProbeSet(t, bin)
	hold := s.add("main.hold")
	// hold(req *Request): req in RAX; Request starts {Model string; MaxTokens int}.
	hold.Entry = []Fetch{
		{Attr: 0, Kind: KindString, Loc: inMem(RegRAX, 0)},
		{Attr: 1, Kind: KindInt, Size: 8, Loc: inMem(RegRAX, 16)},
	}
	hold.Return = []Fetch{{Attr: 2, Kind: KindInt, Size: 8, Loc: inRegs(RegRAX)}}
	stall := s.add("main.stall")
	stall.Entry = []Fetch{{Attr: 0, Kind: KindInt, Size: 8, Loc: inRegs(RegRAX)}}

	proc := startTraced(t, bin)
	ss := attachSession(t, s, proc, DefaultOptions())
	before := time.Now()
	if _, err := fmt.Fprintln(proc.stdin, "hold gpt-x"); err != nil {
		t.Fatal(err)
	}
	if !proc.out.Scan() || proc.out.Text() != "held" {
		t.Fatalf("fixture answered %q %v", proc.out.Text(), proc.out.Err())
	}
	pid := proc.cmd.Process.Pid
	if err := proc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	proc.cmd.Wait()

	evs, err := ss.tr.TakeOpenSpans()
	if err != nil {
		t.Fatalf("take open spans: %v", err)
	}
	if len(evs) != 2 {
		t.Fatalf("open spans: got %d, want 2:\n%s", len(evs), summary(evs))
	}
	root, child := evs[0], evs[1]
	if root.Probe != hold || child.Probe != stall {
		t.Fatalf("open spans in stack order:\n%s", summary(evs))
	}
	for _, ev := range evs {
		if ev.Kind != EventEntry || ev.PID != uint32(pid) || !ev.Sampled || ev.EntryLost {
			t.Errorf("open span %s: kind %v pid %d (want %d) sampled %v entry lost %v",
				ev.Probe.Spec.Symbol, ev.Kind, ev.PID, pid, ev.Sampled, ev.EntryLost)
		}
		if ev.Time.Before(before.Add(-time.Second)) || ev.Time.After(time.Now()) {
			t.Errorf("open span %s starts at %v, the request ran from %v", ev.Probe.Spec.Symbol, ev.Time, before)
		}
		if ev.SpanID == zeroSpan {
			t.Errorf("open span %s without a span id", ev.Probe.Spec.Symbol)
		}
	}
	if root.ParentSpanID != zeroSpan || child.ParentSpanID != root.SpanID || child.TraceID != root.TraceID {
		t.Errorf("parent links: root parent %x, child parent %x (want %x), traces %x %x",
			root.ParentSpanID, child.ParentSpanID, root.SpanID, root.TraceID, child.TraceID)
	}
	if len(root.Values) != 2 || root.Values[0].Str != "gpt-x" || root.Values[1].Int != 7 {
		t.Errorf("hold entry values: %+v", root.Values)
	}
	if len(child.Values) != 1 || child.Values[0].Int != 7 {
		t.Errorf("stall entry values: %+v", child.Values)
	}

	// Nothing of the process is left in the kernel, and a second take
	// finds nothing.
	var k bpf.CaptureGkey
	var st bpf.CaptureSpanStack
	it := ss.tr.c.maps.Stacks.Iterate()
	for it.Next(&k, &st) {
		if k.Tgid == uint32(pid) {
			t.Errorf("stack of goroutine %#x of the killed process left in the kernel (depth %d)", k.G, st.Depth)
		}
	}
	for _, ev := range evs {
		id := spanKey64(ev.SpanID)
		if v, _ := ss.tr.c.maps.EntrySmall.LookupBytes(&id); v != nil {
			t.Errorf("entry values of %s left in entry_small", ev.Probe.Spec.Symbol)
		}
	}
	if again, err := ss.tr.TakeOpenSpans(); err != nil || len(again) != 0 {
		t.Errorf("second take: %d spans, %v", len(again), err)
	}
}

// spanKey64 is a span id as the kernel keys entry values.
func spanKey64(id [8]byte) uint64 {
	var v uint64
	for _, b := range id {
		v = v<<8 | uint64(b)
	}
	return v
}

// TestTakeOpenSpansHostileMaps writes stacks and entry values no kernel
// program writes (a depth past the bound, lengths and counts past the
// layout, a probe id of nobody) for the fixture's process, and checks
// that TakeOpenSpans stays in bounds: every span of a known probe comes
// out once, values it cannot trust are reported missing, and all of it is
// deleted.
func TestTakeOpenSpansHostileMaps(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	s := newProbeSet(t, bin)
	hold := s.add("main.hold")
	hold.Entry = []Fetch{{Attr: 0, Kind: KindString, Loc: inMem(RegRAX, 0)}}
	proc := startTraced(t, bin)
	ss := attachSession(t, s, proc, DefaultOptions())
	tr := ss.tr
	pid := uint32(proc.cmd.Process.Pid)
	id := uint32(tr.base + hold.ID)

	var st bpf.CaptureSpanStack
	st.Depth = 1 << 31 // past MaxDepth
	for i := range st.E {
		e := &st.E[i]
		e.TraceHi, e.TraceLo, e.SpanId, e.ProbeId = 1, 2, uint64(1000+i), id
		e.Flags = flagSampled | spanEntryVals | spanEntrySmall
		if i%2 == 1 {
			e.ParentSpanId = uint64(1000 + i - 1)
		}
	}
	st.E[3].ProbeId = 1 << 30 // nobody's probe
	st.E[4].Flags = 0         // unsampled
	k := bpf.CaptureGkey{G: 0xc000001000, Tgid: pid}
	if err := tr.c.maps.Stacks.Put(&k, &st); err != nil {
		t.Fatal(err)
	}
	// Entry values: a length past the data, a count past MaxFetches,
	// bytes that do not decode, and one sane pair of bounds with no value.
	bad := []bpf.CaptureEntrySmall{{Len: 1 << 30, N: 1}, {Len: 8, N: 200}, {Len: 40, N: 1}, {Len: 0, N: 0}}
	for i := range bad {
		for j := range bad[i].Data {
			bad[i].Data[j] = -1
		}
		span := uint64(1000 + i)
		if err := tr.c.maps.EntrySmall.Put(&span, &bad[i]); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := tr.TakeOpenSpans()
	if err != nil {
		t.Fatal(err)
	}
	// 16 entries, less the one of an unknown probe and the unsampled one.
	if len(evs) != MaxDepth-2 {
		t.Fatalf("got %d spans, want %d:\n%s", len(evs), MaxDepth-2, summary(evs))
	}
	for _, ev := range evs {
		if len(ev.Values) != 1 || !ev.Values[0].Missing || !ev.EntryLost {
			t.Errorf("span %x: values %+v entry lost %v, want one missing value", ev.SpanID, ev.Values, ev.EntryLost)
		}
	}
	if err := tr.c.maps.Stacks.Lookup(&k, &st); err == nil {
		t.Error("the hostile stack is still in the kernel")
	}
	for i := range bad {
		span := uint64(1000 + i)
		if v, _ := tr.c.maps.EntrySmall.LookupBytes(&span); v != nil {
			t.Errorf("entry values of span %d still in the kernel", span)
		}
	}
}
