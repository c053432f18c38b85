package probes

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/routerscope/routerscope/internal/testenv"
)

// Root-gated tests that attach the kernel programs to the traced fixture
// (testdata/traced) and assert the exact events. The probes are built by
// hand from the fixture's symbols and the register ABI, so they test the
// kernel side alone.

var zeroSpan [8]byte

func TestCaptureValuesAndNesting(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	s := newProbeSet(t, bin)
	handle := s.add("main.handle")
	// handle(req *Request) (*Response, error): req in RAX; Request is
	// {Model string; MaxTokens int; Stream bool; Temperature float64;
	// Tags []string; Meta *Meta}, Meta is {User string; Level int32}.
	handle.Entry = []Fetch{
		{Attr: 0, Kind: KindString, Loc: inMem(RegRAX, 0)},
		{Attr: 1, Kind: KindInt, Size: 8, Loc: inMem(RegRAX, 16)},
		{Attr: 2, Kind: KindBool, Size: 1, Loc: inMem(RegRAX, 24)},
		{Attr: 3, Kind: KindFloat, Size: 8, Loc: inMem(RegRAX, 32)},
		{Attr: 4, Kind: KindStringSlice, Loc: inMem(RegRAX, 40)},
		{Attr: 5, Kind: KindString, Loc: inMem(RegRAX, 64, 0)},
		{Attr: 6, Kind: KindInt, Size: 4, Loc: inMem(RegRAX, 64, 16)},
	}
	// Results: *Response in RAX, error in RBX (itab) and RCX (data);
	// Response is {Category{Name string; Score float64}; Tokens int}.
	handle.Return = []Fetch{
		{Attr: 7, Kind: KindString, Loc: inMem(RegRAX, 0)},
		{Attr: 8, Kind: KindFloat, Size: 8, Loc: inMem(RegRAX, 16)},
		{Attr: 9, Kind: KindInt, Size: 8, Loc: inMem(RegRAX, 24)},
	}
	handle.Error = &Fetch{Attr: -1, Kind: KindError, Loc: inRegs(RegRBX, RegRCX)}
	classify := s.add("main.classify")
	classify.Entry = []Fetch{
		{Attr: 0, Kind: KindString, Loc: inRegs(RegRAX, RegRBX)},
		{Attr: 1, Kind: KindInt, Size: 8, Loc: inRegs(RegRCX)},
	}
	classify.Return = []Fetch{{Attr: 2, Kind: KindString, Loc: inRegs(RegRAX, RegRBX)}}

	proc := startTraced(t, bin)
	ss := attachSession(t, s, proc, DefaultOptions())
	before := time.Now()
	evs := ss.run("handle gpt")
	after := time.Now()
	expect(t, evs, "entry main.handle", "entry main.classify", "return main.classify", "return main.handle")

	he, ce, cr, hr := evs[0], evs[1], evs[2], evs[3]
	pid := uint32(proc.cmd.Process.Pid)
	for _, e := range evs {
		if e.PID != pid || e.TID == 0 || e.Goroutine != he.Goroutine || !e.Sampled || e.TraceID != he.TraceID {
			t.Errorf("event header: %s", summary([]Event{e}))
		}
		// The monotonic-to-wall conversion: within the command's wall time,
		// allowing for the offset's measurement error.
		if e.Time.Before(before.Add(-50*time.Millisecond)) || e.Time.After(after.Add(50*time.Millisecond)) {
			t.Errorf("event time %v outside [%v, %v]", e.Time, before, after)
		}
	}
	if he.TraceID == [16]byte{} || he.SpanID == zeroSpan || he.ParentSpanID != zeroSpan {
		t.Errorf("root span ids: %s", summary(evs[:1]))
	}
	if ce.ParentSpanID != he.SpanID || ce.SpanID == he.SpanID || cr.SpanID != ce.SpanID || hr.SpanID != he.SpanID {
		t.Errorf("nesting:\n%s", summary(evs))
	}
	v := he.Values
	if len(v) != 7 || v[0].Str != "gpt" || v[1].Int != 12 || !v[2].Bool || v[3].Float != 0.5 ||
		v[5].Str != "u-gpt" || v[6].Int != -3 {
		t.Errorf("handle entry values: %+v", v)
	}
	if l := v[4]; len(l.Strs) != 3 || l.Strs[0] != "a" || l.Strs[1] != "bb" || l.Strs[2] != strings.Repeat("x", MaxElemBytes) || !l.Truncated {
		t.Errorf("[]string value: %+v", l)
	}
	if v := ce.Values; v[0].Str != "gpt" || v[1].Int != 12 {
		t.Errorf("classify entry values: %+v", v)
	}
	if v := cr.Values; v[0].Str != "cat-gpt" {
		t.Errorf("classify return values: %+v", v)
	}
	if v := hr.Values; v[0].Str != "cat-gpt" || v[1].Float != 3 || v[2].Int != 24 || hr.Err.Failed {
		t.Errorf("handle return: %+v err %+v", v, hr.Err)
	}

	// A failing call: nil *Response (its fields are missing) and an error.
	evs = ss.run("handle bad")
	expect(t, evs, "entry main.handle", "return main.handle")
	hr = evs[1]
	if !hr.Err.Failed || hr.Err.Type != "*errors.errorString" || hr.Err.Message != "model not allowed: bad" {
		t.Errorf("error return: %+v", hr.Err)
	}
	if !hr.Values[0].Missing || !hr.Values[2].Missing {
		t.Errorf("fields of a nil result should be missing: %+v", hr.Values)
	}
	if evs[0].TraceID == he.TraceID {
		t.Errorf("second request reused the first trace id")
	}

	// A nil pointer on an entry field path.
	evs = ss.run("handle-nometa x")
	if len(evs) < 1 || !evs[0].Values[5].Missing || !evs[0].Values[6].Missing || evs[0].Values[0].Str != "x" {
		t.Errorf("nil Meta: %s", summary(evs))
	}
}

func TestCaptureErrors(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	s := newProbeSet(t, bin)
	fail := s.add("main.fail")
	fail.Entry = []Fetch{{Attr: 0, Kind: KindString, Loc: inRegs(RegRAX, RegRBX)}}
	fail.Error = &Fetch{Attr: -1, Kind: KindError, Loc: inRegs(RegRAX, RegRBX)}
	ss := attachSession(t, s, startTraced(t, bin), Options{})
	for _, c := range []struct {
		kind string
		want ErrorValue
	}{
		{"none", ErrorValue{}},
		{"plain", ErrorValue{Failed: true, Type: "*errors.errorString", Message: "plain failure"}},
		{"wrapped", ErrorValue{Failed: true, Type: "*fmt.wrapError", Message: "wrapped: inner"}},
		// A type whose first field is not its message: failed, no message.
		{"custom", ErrorValue{Failed: true, Type: "*main.customError"}},
	} {
		evs := ss.run("fail " + c.kind)
		expect(t, evs, "entry main.fail", "return main.fail")
		if evs[0].Values[0].Str != c.kind {
			t.Errorf("fail %s: argument %+v", c.kind, evs[0].Values[0])
		}
		if evs[1].Err != c.want {
			t.Errorf("fail %s: error %+v, want %+v", c.kind, evs[1].Err, c.want)
		}
	}
}

func TestCaptureRecursion(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	s := newProbeSet(t, bin)
	fib := s.add("main.fib")
	fib.Entry = []Fetch{{Attr: 0, Kind: KindInt, Size: 8, Loc: inRegs(RegRAX)}}
	fib.Return = []Fetch{{Attr: 1, Kind: KindInt, Size: 8, Loc: inRegs(RegRAX)}}
	ss := attachSession(t, s, startTraced(t, bin), Options{})
	evs := ss.run("fib 5")

	// Replay the events as a stack: every entry nests under the open span,
	// every return closes it with fib(n).
	fibOf := func(n int64) int64 {
		a, b := int64(0), int64(1)
		for range n {
			a, b = b, a+b
		}
		return a
	}
	type open struct {
		span [8]byte
		n    int64
	}
	var stack []open
	calls := 0
	for _, e := range evs {
		switch e.Kind {
		case EventEntry:
			calls++
			parent := zeroSpan
			if len(stack) > 0 {
				parent = stack[len(stack)-1].span
				if n := stack[len(stack)-1].n; e.Values[0].Int != n-1 && e.Values[0].Int != n-2 {
					t.Errorf("fib(%d) called from fib(%d)", e.Values[0].Int, n)
				}
			}
			if e.ParentSpanID != parent || e.TraceID != evs[0].TraceID {
				t.Fatalf("entry of fib(%d) has parent %x, want %x\n%s", e.Values[0].Int, e.ParentSpanID, parent, summary(evs))
			}
			stack = append(stack, open{e.SpanID, e.Values[0].Int})
		case EventReturn:
			if len(stack) == 0 {
				t.Fatalf("return without entry\n%s", summary(evs))
			}
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if e.SpanID != top.span || e.Values[0].Int != fibOf(top.n) {
				t.Errorf("return of fib(%d): span %x value %d, want %x %d", top.n, e.SpanID, e.Values[0].Int, top.span, fibOf(top.n))
			}
		default:
			t.Errorf("unexpected %v", e.Kind)
		}
	}
	if calls != 15 || len(stack) != 0 { // fib(5) makes 15 calls
		t.Errorf("%d calls, %d left open\n%s", calls, len(stack), summary(evs))
	}
}

func TestCapturePanicUnwinds(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	s := newProbeSet(t, bin)
	s.add("main.guard")
	risky := s.add("main.risky")
	risky.Entry = []Fetch{{Attr: 0, Kind: KindInt, Size: 8, Loc: inRegs(RegRAX)}}
	s.add("main.fib")
	ss := attachSession(t, s, startTraced(t, bin), Options{})

	evs := ss.run("guard 3")
	expect(t, evs,
		"entry main.guard", "entry main.risky", "entry main.risky", "entry main.risky", "entry main.risky",
		"abandoned main.risky", "abandoned main.risky", "abandoned main.risky", "abandoned main.risky",
		"return main.guard")
	// Abandoned innermost first; each names a span that was opened.
	for i := range 4 {
		if evs[5+i].SpanID != evs[4-i].SpanID || evs[5+i].ParentSpanID != evs[3-i].SpanID {
			t.Errorf("abandoned %d does not match entry %d\n%s", i, 4-i, summary(evs))
		}
	}
	if evs[9].SpanID != evs[0].SpanID {
		t.Errorf("guard's return closes span %x, want %x", evs[9].SpanID, evs[0].SpanID)
	}
	st := ss.tr.Stats()
	if p := st.Probes[risky.ID]; p.Abandoned != 4 || p.Entries != 4 {
		t.Errorf("risky stats %+v", p)
	}

	// No stale entries: the next span on the goroutine is a root.
	guardTrace := evs[0].TraceID
	evs = ss.run("fib 1")
	expect(t, evs, "entry main.fib", "return main.fib")
	if evs[0].ParentSpanID != zeroSpan || evs[0].TraceID == guardTrace {
		t.Errorf("span after the panic is not a root: %s", summary(evs))
	}
}

func TestCaptureStackGrowth(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)

	// After the stack check, the probe fires once although grow's 64 KiB
	// frame makes the new goroutine's stack grow.
	s := newProbeSet(t, bin)
	s.add("main.grow")
	ss := attachSession(t, s, startTraced(t, bin), Options{})
	evs := ss.run("grow 3")
	expect(t, evs, "entry main.grow", "return main.grow")
	if evs[0].SpanID != evs[1].SpanID || evs[0].ParentSpanID != zeroSpan {
		t.Errorf("spans do not pair\n%s", summary(evs))
	}
	ss.tr.Close()

	// At the first instruction it fires again after every morestack; the
	// depth rule closes each earlier span as abandoned. This is what the
	// prologue placement avoids, and it shows the test above can fail.
	s = newProbeSet(t, bin)
	s.add("main.grow")
	ss = attachSession(t, s, startTraced(t, bin), Options{Placement: PlacementSymbol})
	evs = ss.run("grow 3")
	n := len(evs)
	if n < 4 || n%2 != 0 || evs[n-2].Kind != EventEntry || evs[n-1].Kind != EventReturn || evs[n-1].SpanID != evs[n-2].SpanID {
		t.Fatalf("naive placement: want (entry, abandoned)+ entry return:\n%s", summary(evs))
	}
	for i := 0; i < n-2; i += 2 {
		if evs[i].Kind != EventEntry || evs[i+1].Kind != EventAbandoned || evs[i].SpanID != evs[i+1].SpanID {
			t.Errorf("naive placement: events %d, %d are not an abandoned span:\n%s", i, i+1, summary(evs))
		}
	}
}

func TestCaptureSamplingRatioZero(t *testing.T) {
	s, fib, proc := fibAndMark(t)
	tr, err := Attach(t.Context(), s.program(), proc.cmd.Process.Pid, Options{SampleRatio: Ratio(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	proc.do(t, "fib 4")
	st := tr.Stats()
	// The root was tracked; the 8 calls under it took the unsampled exit;
	// nothing was reported.
	if p := st.Probes[fib.ID]; p.Entries != 1 || p.Returns != 1 || p.Skipped != 8 || p.Emitted != 0 {
		t.Errorf("fib stats with ratio 0: %+v", p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if ev, err := tr.Read(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("read with nothing sampled: %v %v", ev.Kind, err)
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestCaptureCloseDetaches(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	proc := startTraced(t, bin)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := newProbeSet(t, bin)
	fib := s.add("main.fib")
	s.add("main.mark")
	fds := openFDs(t)

	tr, err := Attach(t.Context(), s.program(), proc.cmd.Process.Pid, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	st := tr.Stats()
	if got, want := st.Probes[fib.ID].Uprobes, 1+len(fib.ReturnOffsets); got != want || st.HandOffUprobes < 2 {
		t.Errorf("uprobes: fib %d want %d, hand-off %d", got, want, st.HandOffUprobes)
	}
	// A blocked Read returns ErrClosed when another goroutine closes.
	readErr := make(chan error, 1)
	go func() {
		_, err := tr.Read(context.Background())
		readErr <- err
	}()
	if err := tr.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-readErr; !errors.Is(err, ErrClosed) {
		t.Errorf("blocked read after close: %v, want ErrClosed", err)
	}
	if err := tr.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if _, err := tr.Read(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("read after close: %v, want ErrClosed", err)
	}
	// Every link, map and program fd is gone, so the uprobes are detached.
	if got := openFDs(t); got != fds {
		t.Errorf("%d fds open after close, %d before attach", got, fds)
	}
	proc.do(t, "fib 3") // the fixture runs on unprobed
}

func TestCaptureFailedAttachUndoes(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	proc := startTraced(t, bin)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := newProbeSet(t, bin)
	s.add("main.fib")
	bad := s.add("main.mark")
	// Several uprobes attach before this one fails: past the end of the file.
	bad.ReturnOffsets = append(bad.ReturnOffsets, 1<<40)
	fds := openFDs(t)
	tr, err := Attach(t.Context(), s.program(), proc.cmd.Process.Pid, DefaultOptions())
	if err == nil {
		tr.Close()
		t.Fatal("attach at an offset past the end of the binary succeeded")
	}
	if !strings.Contains(err.Error(), "main.mark") || !strings.Contains(err.Error(), "0x10000000000") {
		t.Errorf("error does not name the probe and offset: %v", err)
	}
	if got := openFDs(t); got != fds {
		t.Errorf("%d fds open after the failed attach, %d before", got, fds)
	}
	proc.do(t, "fib 3")
}

func TestCaptureLostEvents(t *testing.T) {
	s, fib, proc := fibAndMark(t)
	// One page holds some 46 records of 88 bytes (8 of ring header and an
	// 80-byte span without values): the Capture's reader moves records
	// into the Tracer's queue (tracerQueue) and then waits, since nothing
	// reads the Tracer; the rest is lost, and every span is either sent or
	// counted lost, whole.
	tr, err := Attach(t.Context(), s.program(), proc.cmd.Process.Pid, Options{RingBufferBytes: os.Getpagesize()})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// fib(15): 1973 spans, more than the ring and the queue hold together.
	proc.do(t, "fib 15")
	st := tr.Stats()
	p := st.Probes[fib.ID]
	var emitted uint64
	for _, ps := range st.Probes {
		emitted += ps.Emitted
	}
	// 1973 fib spans and the command's main.mark.
	if p.Entries != 1973 || p.Returns != 1973 || tr.Lost() == 0 || emitted+tr.Lost() != 1974 || emitted > uint64(os.Getpagesize()/88+tracerQueue+1) {
		t.Errorf("fib stats %+v, lost %d, emitted %d: want 1973 spans, records emitted + lost = 1974", p, tr.Lost(), emitted)
	}
}

// TestCaptureSamplingRatio: with ratio 0.5 a trace is reported whole or not
// at all, and every reported trace id satisfies TraceIDRatioBased's rule.
func TestCaptureSamplingRatio(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	s := newProbeSet(t, bin)
	fib := s.add("main.fib")
	proc := startTraced(t, bin)
	tr, err := Attach(t.Context(), s.program(), proc.cmd.Process.Pid, Options{SampleRatio: Ratio(0.5)})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	const runs = 30
	for range runs {
		proc.do(t, "fib 3")
	}
	// No marker here (it would be sampled too): the kernel's emitted count
	// says how many records (spans) to read.
	traces := map[[16]byte]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range tr.Stats().Probes[fib.ID].Emitted {
		e, err := tr.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		traces[e.TraceID]++
	}
	for id, n := range traces {
		// fib(3) is 5 calls: 5 spans per sampled trace.
		if n != 5 {
			t.Errorf("trace %x has %d spans, want 5", id, n)
		}
		if lo := binary.BigEndian.Uint64(id[8:]); lo>>1 >= 1<<62 {
			t.Errorf("trace %x was sampled but (id[8:16] >> 1) = %#x is not below ratio*2^63", id, lo>>1)
		}
	}
	// Each run is sampled with probability 1/2: all or none has
	// probability 2^-29.
	if len(traces) == 0 || len(traces) == runs {
		t.Errorf("%d of %d traces sampled at ratio 0.5", len(traces), runs)
	}
	if st := tr.Stats().Probes[fib.ID]; st.Entries+st.Skipped != 5*runs || st.Emitted != uint64(5*len(traces)) ||
		st.Entries != uint64(5*len(traces)+runs-len(traces)) {
		t.Errorf("fib stats %+v, %d traces sampled", st, len(traces))
	}
}

// TestCapturePIDFilter: uprobes attached by PID see only that process,
// though another process runs the same binary.
func TestCapturePIDFilter(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	s := newProbeSet(t, bin)
	s.add("main.fib")
	target, other := startTraced(t, bin), startTraced(t, bin)
	ss := attachSession(t, s, target, Options{})
	other.do(t, "fib 4")
	evs := ss.run("fib 2")
	// fib(2) is 3 calls; fib(4) in the other process must not show up.
	if len(evs) != 6 {
		t.Fatalf("want the 6 events of fib(2):\n%s", summary(evs))
	}
	for _, e := range evs {
		if e.PID != uint32(target.cmd.Process.Pid) {
			t.Errorf("event of pid %d, attached to %d", e.PID, target.cmd.Process.Pid)
		}
	}
}

// TestCaptureDeclaredParent: a probe that names its parent probe nests
// under that probe's innermost open span, skipping spans in between.
func TestCaptureDeclaredParent(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	s := newProbeSet(t, bin)
	guard := s.add("main.guard")
	risky := s.add("main.risky")
	risky.ParentID = guard.ID
	ss := attachSession(t, s, startTraced(t, bin), Options{})
	evs := ss.run("guard 2")
	expect(t, evs,
		"entry main.guard", "entry main.risky", "entry main.risky", "entry main.risky",
		"abandoned main.risky", "abandoned main.risky", "abandoned main.risky", "return main.guard")
	for _, e := range evs[1:4] {
		if e.ParentSpanID != evs[0].SpanID || e.TraceID != evs[0].TraceID {
			t.Errorf("risky's parent is %x, want guard's span %x\n%s", e.ParentSpanID, evs[0].SpanID, summary(evs))
		}
	}
}

// fibAndMark starts the traced fixture with probes on main.fib and
// main.mark, not attached yet.
func fibAndMark(t *testing.T) (*probeSet, *Resolved, *traced) {
	t.Helper()
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	s := newProbeSet(t, bin)
	fib := s.add("main.fib")
	s.add("main.mark")
	return s, fib, startTraced(t, bin)
}
