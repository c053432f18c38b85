package probes

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/routerscope/routerscope/internal/testenv"
)

// Helpers of the root-gated capture tests: build and drive the traced
// fixture, build probes by hand, read a command's events.

// tracedBinary builds testdata/traced once per test run.
func tracedBinary(t testing.TB) string {
	t.Helper()
	return fixtureBuild(t, "traced", testenv.Build{Pkg: "./testdata/traced", Env: []string{"CGO_ENABLED=0"}})
}

// traced is a running fixture process.
type traced struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// startTraced starts the fixture and waits until it reads commands.
func startTraced(t testing.TB, path string) *traced {
	t.Helper()
	cmd := exec.Command(path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	p := &traced{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	t.Cleanup(func() {
		stdin.Close()
		if cmd.Wait() != nil {
			cmd.Process.Kill()
		}
	})
	if !p.out.Scan() || p.out.Text() != "ready" {
		t.Fatalf("fixture did not start: %q %v", p.out.Text(), p.out.Err())
	}
	return p
}

// do runs one fixture command and waits for it to finish.
func (p *traced) do(t testing.TB, command string) {
	t.Helper()
	if _, err := fmt.Fprintln(p.stdin, command); err != nil {
		t.Fatalf("send %q: %v", command, err)
	}
	if !p.out.Scan() || p.out.Text() != "done" {
		t.Fatalf("command %q: fixture answered %q %v", command, p.out.Text(), p.out.Err())
	}
}

// probeSet builds Resolved probes by hand against the fixture.
type probeSet struct {
	t   testing.TB
	bin *Binary
	ps  []*Resolved
}

func newProbeSet(t testing.TB, path string) *probeSet {
	b, err := OpenBinary(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &probeSet{t: t, bin: b}
}

// add adds a probe on sym and returns it for its fetches to be filled.
func (s *probeSet) add(sym string) *Resolved {
	s.t.Helper()
	f, err := s.bin.Function(sym)
	if err != nil {
		s.t.Fatal(err)
	}
	p := &Resolved{
		ID: len(s.ps), Spec: Probe{Symbol: sym, Span: sym}, Address: f.Address,
		SymbolOffset: f.SymbolOffset, EntryOffset: f.EntryOffset,
		ReturnOffsets: f.ReturnOffsets, ParentID: -1,
	}
	s.ps = append(s.ps, p)
	return p
}

func (s *probeSet) program() *Program {
	return &Program{Binary: s.bin.Path, BuildID: s.bin.BuildID, Probes: s.ps}
}

func inRegs(rs ...Reg) Location {
	l := Location{InRegs: true, NRegs: uint8(len(rs))}
	copy(l.Regs[:], rs)
	return l
}

func inMem(base Reg, offs ...int64) Location { return Location{Base: base, Offsets: offs} }

// session is a fixture with a tracer attached.
type session struct {
	t    testing.TB
	proc *traced
	tr   *Tracer
	mark *Resolved
}

// attachSession starts the fixture and attaches the probes of s plus main.mark.
func attachSession(t testing.TB, s *probeSet, proc *traced, opts Options) *session {
	t.Helper()
	m := s.add("main.mark")
	tr, err := Attach(t.Context(), s.program(), proc.cmd.Process.Pid, opts)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return &session{t: t, proc: proc, tr: tr, mark: m}
}

// run runs a command and returns its spans, up to main.mark's that ends
// every command (excluded), each cut in its entry and its end (return or
// abandon) and put in the order of their kernel times, so the assertions
// read as the sequence of calls and returns.
func (s *session) run(command string) []Event {
	s.t.Helper()
	s.proc.do(s.t, command)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var evs []Event
	for {
		ev, err := s.tr.Read(ctx)
		if err != nil {
			s.t.Fatalf("command %q: read events: %v (got %d so far)", command, err, len(evs))
		}
		if ev.Kind != EventSpan && ev.Kind != EventAbandoned || ev.Start.After(ev.Time) {
			s.t.Fatalf("command %q: not a whole span: %s", command, summary([]Event{ev}))
		}
		if ev.Probe == s.mark {
			slices.SortStableFunc(evs, func(a, b Event) int { return a.Time.Compare(b.Time) })
			return evs
		}
		evs = append(evs, halves(ev)...)
	}
}

// halves cuts a whole span in an entry event and its end event.
func halves(ev Event) []Event {
	entry, end := ev, ev
	entry.Kind, entry.Time, entry.Values, entry.Err = EventEntry, ev.Start, ev.EntryValues, ErrorValue{}
	if ev.Kind == EventSpan {
		end.Kind = EventReturn
	} else {
		end.Values = nil
	}
	entry.Start, entry.EntryValues, end.Start, end.EntryValues = time.Time{}, nil, time.Time{}, nil
	return []Event{entry, end}
}

// summary renders events one per line for failure messages.
func summary(evs []Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %v %s g=%#x trace=%x span=%x parent=%x values=%+v err=%+v\n",
			e.Kind, e.Probe.Spec.Symbol, e.Goroutine, e.TraceID[:4], e.SpanID, e.ParentSpanID, e.Values, e.Err)
	}
	return b.String()
}

// expect checks events against (kind, symbol) pairs in order.
func expect(t testing.TB, evs []Event, want ...string) {
	t.Helper()
	var got []string
	for _, e := range evs {
		got = append(got, e.Kind.String()+" "+e.Probe.Spec.Symbol)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n  %s", summary(evs), strings.Join(want, "\n  "))
	}
}

// resolveYAML parses a probe spec and resolves it against the binary at
// path (closed when the test ends).
func resolveYAML(t testing.TB, path, yaml string) *Program {
	t.Helper()
	spec, err := ParseSpec([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatalf("parse spec: %v", err)
	}
	b, err := OpenBinary(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	prog, err := Resolve(b, spec)
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	return prog
}

// newTestCapture loads a Capture, closed when the test ends.
func newTestCapture(t testing.TB, opts CaptureOptions) *Capture {
	t.Helper()
	c, err := NewCapture(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
