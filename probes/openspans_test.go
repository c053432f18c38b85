package probes

import (
	"fmt"
	"testing"
	"time"

	"github.com/routerscope/routerscope/bpf"
)

// TestTakeOpenSpansOfKilledProcess kills the fixture with -9 inside a
// request (hold calls stall, which blocks) and checks that both open spans
// come out of the kernel with their ids, parent links and entry values,
// and that their kernel entries are gone afterwards.
func TestTakeOpenSpansOfKilledProcess(t *testing.T) {
	requireRoot(t)
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
