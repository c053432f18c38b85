package probes

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/routerscope/routerscope/internal/testenv"
)

// TestSpecAttachByPID is the capture engine end to end: a YAML spec,
// resolved against the running fixture found by PID, attached, and the
// events carry the declared attributes, correctly nested.
func TestSpecAttachByPID(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	for _, mode := range []LinkMode{LinkMulti, LinkPerfEvent} {
		t.Run(mode.String(), func(t *testing.T) { testSpecAttach(t, mode) })
	}
}

// testSpecAttach attaches a YAML spec to the running fixture with the
// given link mode and checks the events of a few commands.
func testSpecAttach(t *testing.T, mode LinkMode) {
	if mode == LinkMulti && chooseLinkMode() != LinkMulti {
		// Linux 6.6 has them: there, their absence is a failure of the
		// feature probe, not a reason to skip.
		if kernelAtLeast(t, 6, 6) {
			t.Fatalf("Linux %s has uprobe_multi links, but chooseLinkMode does not pick them", kernelRelease(t))
		}
		t.Skip("this kernel has no uprobe_multi links (Linux 6.6+)")
	}
	proc := startTraced(t, tracedBinary(t))
	pid := proc.cmd.Process.Pid

	exe, err := ExePath(pid)
	if err != nil {
		t.Fatalf("exe of pid %d: %v", pid, err)
	}
	prog := resolveYAML(t, exe, `
probes:
  - symbol: main.handle
    span: request
    kind: server
    attributes:
      - {name: model, from: "arg:req.Model"}
      - {name: max_tokens, from: "arg:req.MaxTokens"}
      - {name: stream, from: "arg:req.Stream"}
      - {name: temperature, from: "arg:req.Temperature"}
      - {name: tags, from: "arg:req.Tags"}
      - {name: user, from: "arg:req.Meta.User"}
      - {name: level, from: "arg:req.Meta.Level"}
      - {name: category, from: "return:0.Category.Name"}
      - {name: score, from: "return:0.Category.Score"}
      - {name: tokens, from: "return:0.Tokens"}
      - {name: took_ms, from: duration_ms}
      - {name: fixture, value: traced}
    error: {from: "return:1"}
  - symbol: main.classify
    span: classify
    parent: request
    attributes:
      - {name: text, from: "arg:text"}
      - {name: n, from: "arg:1"}
      - {name: category, from: "return:0"}
  - symbol: main.fib
    span: fib
    attributes:
      - {name: n, from: "arg:n"}
      - {name: result, from: "return:0"}
  - symbol: main.mark
    span: mark
`)
	opts := DefaultOptions()
	opts.PerfEventLinks = mode == LinkPerfEvent
	tr, err := Attach(t.Context(), prog, pid, opts)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	defer tr.Close()
	if tr.LinkMode() != mode {
		t.Fatalf("attached with %s links, want %s", tr.LinkMode(), mode)
	}
	ss := &session{t: t, proc: proc, tr: tr, mark: prog.Probes[3]}

	evs := ss.run("handle gpt")
	expect(t, evs, "entry main.handle", "entry main.classify", "return main.classify", "return main.handle")
	he, ce, cr, hr := evs[0], evs[1], evs[2], evs[3]
	if ce.ParentSpanID != he.SpanID || ce.TraceID != he.TraceID || cr.SpanID != ce.SpanID || hr.SpanID != he.SpanID || he.ParentSpanID != zeroSpan {
		t.Errorf("nesting:\n%s", summary(evs))
	}
	got := map[string]Value{}
	for _, e := range evs {
		for k, v := range attrValues(e) {
			got[e.Probe.Spec.Span+"."+k] = v
		}
	}
	want := map[string]string{
		"request.model": "gpt", "request.max_tokens": "12", "request.stream": "true",
		"request.temperature": "0.5", "request.tags": "a,bb," + strings.Repeat("x", MaxElemBytes),
		"request.user": "u-gpt", "request.level": "-3", "request.category": "cat-gpt",
		"request.score": "3", "request.tokens": "24",
		"classify.text": "gpt", "classify.n": "12", "classify.category": "cat-gpt",
	}
	for k, w := range want {
		v, ok := got[k]
		if !ok {
			t.Errorf("attribute %s missing", k)
			continue
		}
		if s := formatValue(v); s != w {
			t.Errorf("attribute %s = %q, want %q", k, s, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d attributes read, want %d: %v", len(got), len(want), got)
	}
	if hr.Err.Failed {
		t.Errorf("request failed: %+v", hr.Err)
	}

	evs = ss.run("handle bad")
	expect(t, evs, "entry main.handle", "return main.handle")
	if e := evs[1].Err; !e.Failed || e.Message != "model not allowed: bad" || e.Type != "*errors.errorString" {
		t.Errorf("error rule: %+v", e)
	}

	evs = ss.run("fib 3")
	if len(evs) != 10 || evs[0].Values[0].Int != 3 || evs[9].Values[0].Int != 2 || evs[1].ParentSpanID != evs[0].SpanID {
		t.Errorf("fib(3) spans:\n%s", summary(evs))
	}
}

// attrValues maps attribute names to the values an event carries.
func attrValues(e Event) map[string]Value {
	fetches := e.Probe.Entry
	if e.Kind == EventReturn {
		fetches = e.Probe.Return
	}
	m := map[string]Value{}
	for i, v := range e.Values {
		if a := fetches[i].Attr; a >= 0 {
			m[e.Probe.Spec.Attributes[a].Name] = v
		}
	}
	return m
}

// formatValue renders a value the way the assertions spell it.
func formatValue(v Value) string {
	switch v.Kind {
	case KindInt:
		return strconv.FormatInt(v.Int, 10)
	case KindUint:
		return strconv.FormatUint(v.Uint, 10)
	case KindBool:
		return strconv.FormatBool(v.Bool)
	case KindFloat:
		return strconv.FormatFloat(v.Float, 'g', -1, 64)
	case KindString:
		return v.Str
	case KindStringSlice:
		return strings.Join(v.Strs, ",")
	}
	return "?"
}

// kernelRelease is uname -r.
func kernelRelease(t *testing.T) string {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	return unix.ByteSliceToString(u.Release[:])
}

// kernelAtLeast tells whether the running kernel is major.minor or later.
func kernelAtLeast(t *testing.T, major, minor int) bool {
	t.Helper()
	var ma, mi int
	if _, err := fmt.Sscanf(kernelRelease(t), "%d.%d", &ma, &mi); err != nil {
		t.Fatalf("parse kernel release %q: %v", kernelRelease(t), err)
	}
	return ma > major || ma == major && mi >= minor
}
