package e2e

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/routerscope/routerscope/internal/otlptest"
	"github.com/routerscope/routerscope/internal/spanname"
)

// Which stage spans each kind of request produces, in call order.
var (
	stagesFull      = []string{spanname.Classify, spanname.PII, spanname.Jailbreak, spanname.Cache, spanname.Routing, spanname.Backend, spanname.Inject, spanname.Upstream}
	stagesPII       = []string{spanname.Classify, spanname.PII}
	stagesJailbreak = []string{spanname.Classify, spanname.PII, spanname.Jailbreak}
	stagesCacheHit  = []string{spanname.Classify, spanname.PII, spanname.Jailbreak, spanname.Cache}
)

// tree is one trace: its root and its children by name.
type tree struct {
	traceID  string
	root     otlptest.Span
	children map[string]otlptest.Span
	all      []otlptest.Span
}

// buildTrees groups spans by trace and checks the structural invariants every
// trace must hold: exactly one root, every other span a direct child of it,
// no duplicate span ids, no stage twice.
func buildTrees(t *testing.T, spans []otlptest.Span) map[string]*tree {
	t.Helper()
	seen := map[string]bool{}
	byTrace := map[string][]otlptest.Span{}
	for _, s := range spans {
		id := s.TraceIDHex() + "/" + s.SpanIDHex()
		if seen[id] {
			t.Errorf("duplicate span %s (%s)", id, s.Name)
		}
		seen[id] = true
		byTrace[s.TraceIDHex()] = append(byTrace[s.TraceIDHex()], s)
	}
	trees := map[string]*tree{}
	for tid, ss := range byTrace {
		tr := &tree{traceID: tid, children: map[string]otlptest.Span{}, all: ss}
		var roots []otlptest.Span
		for _, s := range ss {
			if len(s.ParentSpanId) == 0 {
				roots = append(roots, s)
			}
		}
		if len(roots) != 1 {
			t.Errorf("trace %s: %d roots, want 1: %s", tid, len(roots), names(ss))
			continue
		}
		tr.root = roots[0]
		if tr.root.Name != spanname.Root {
			t.Errorf("trace %s: root is %q, want %q", tid, tr.root.Name, spanname.Root)
		}
		for _, s := range ss {
			if s.SpanIDHex() == tr.root.SpanIDHex() {
				continue
			}
			if s.ParentIDHex() != tr.root.SpanIDHex() {
				t.Errorf("trace %s: %s has parent %s, want the root %s (orphan or wrong nesting)",
					tid, s.Name, s.ParentIDHex(), tr.root.SpanIDHex())
			}
			if _, dup := tr.children[s.Name]; dup {
				t.Errorf("trace %s: %s appears twice", tid, s.Name)
			}
			tr.children[s.Name] = s
			if s.StartTimeUnixNano < tr.root.StartTimeUnixNano || s.EndTimeUnixNano > tr.root.EndTimeUnixNano {
				t.Errorf("trace %s: %s [%d,%d] is not inside the root [%d,%d]", tid, s.Name,
					s.StartTimeUnixNano, s.EndTimeUnixNano, tr.root.StartTimeUnixNano, tr.root.EndTimeUnixNano)
			}
		}
		trees[tid] = tr
	}
	return trees
}

// byRequestID indexes trees by the root's request.id.
func byRequestID(t *testing.T, trees map[string]*tree) map[string]*tree {
	t.Helper()
	out := map[string]*tree{}
	for _, tr := range trees {
		id := str(t, tr.root, "request.id")
		if _, dup := out[id]; dup {
			t.Errorf("two traces for request.id %q", id)
		}
		out[id] = tr
	}
	return out
}

func names(ss []otlptest.Span) string {
	var n []string
	for _, s := range ss {
		n = append(n, s.Name)
	}
	sort.Strings(n)
	return strings.Join(n, ",")
}

// checkStages asserts the tree has exactly the given stage children.
func (tr *tree) checkStages(t *testing.T, want []string) {
	t.Helper()
	var got []string
	for name := range tr.children {
		got = append(got, name)
	}
	sort.Strings(got)
	w := append([]string(nil), want...)
	sort.Strings(w)
	if strings.Join(got, ",") != strings.Join(w, ",") {
		t.Errorf("trace %s (request %s): stages\n got  %v\n want %v", tr.traceID, attrString(tr.root, "request.id"), got, w)
	}
}

// child returns the named stage span, failing the test when it is absent.
func (tr *tree) child(t *testing.T, name string) otlptest.Span {
	t.Helper()
	s, ok := tr.children[name]
	if !ok {
		t.Fatalf("trace %s: no %s span", tr.traceID, name)
	}
	return s
}

func attr(t *testing.T, s otlptest.Span, key string) *commonpb.AnyValue {
	t.Helper()
	v, ok := s.Attr(key)
	if !ok {
		t.Errorf("%s: attribute %s missing (have %s)", s.Name, key, attrKeys(s))
		return &commonpb.AnyValue{}
	}
	return v
}

func attrKeys(s otlptest.Span) string {
	var k []string
	for _, kv := range s.Attributes {
		k = append(k, kv.Key)
	}
	return strings.Join(k, ",")
}

func attrString(s otlptest.Span, key string) string {
	v, _ := s.Attr(key)
	if v == nil {
		return ""
	}
	return v.GetStringValue()
}

func str(t *testing.T, s otlptest.Span, key string) string {
	t.Helper()
	v := attr(t, s, key)
	if _, ok := v.Value.(*commonpb.AnyValue_StringValue); !ok && v.Value != nil {
		t.Errorf("%s: %s is %T, want a string", s.Name, key, v.Value)
	}
	return v.GetStringValue()
}

func wantStr(t *testing.T, s otlptest.Span, key, want string) {
	t.Helper()
	if got := str(t, s, key); got != want {
		t.Errorf("%s: %s = %q, want %q", s.Name, key, got, want)
	}
}

// wantStrOrAbsent wants the value, or no attribute at all when want is "".
func wantStrOrAbsent(t *testing.T, s otlptest.Span, key, want string) {
	t.Helper()
	if want == "" {
		if v, ok := s.Attr(key); ok {
			t.Errorf("%s: %s = %v, want it left off (empty)", s.Name, key, v)
		}
		return
	}
	wantStr(t, s, key, want)
}

func wantBool(t *testing.T, s otlptest.Span, key string, want bool) {
	t.Helper()
	v := attr(t, s, key)
	if _, ok := v.Value.(*commonpb.AnyValue_BoolValue); !ok {
		t.Errorf("%s: %s is %T, want a bool", s.Name, key, v.Value)
		return
	}
	if v.GetBoolValue() != want {
		t.Errorf("%s: %s = %v, want %v", s.Name, key, v.GetBoolValue(), want)
	}
}

func wantInt(t *testing.T, s otlptest.Span, key string, want int64) {
	t.Helper()
	if got := intAttr(t, s, key); got != want {
		t.Errorf("%s: %s = %d, want %d", s.Name, key, got, want)
	}
}

func intAttr(t *testing.T, s otlptest.Span, key string) int64 {
	t.Helper()
	v := attr(t, s, key)
	if _, ok := v.Value.(*commonpb.AnyValue_IntValue); !ok {
		t.Errorf("%s: %s is %T, want an int", s.Name, key, v.Value)
	}
	return v.GetIntValue()
}

func floatAttr(t *testing.T, s otlptest.Span, key string) float64 {
	t.Helper()
	v := attr(t, s, key)
	if _, ok := v.Value.(*commonpb.AnyValue_DoubleValue); !ok {
		t.Errorf("%s: %s is %T, want a double", s.Name, key, v.Value)
	}
	return v.GetDoubleValue()
}

func strList(t *testing.T, s otlptest.Span, key string) []string {
	t.Helper()
	v := attr(t, s, key)
	arr := v.GetArrayValue()
	if arr == nil {
		t.Errorf("%s: %s is %T, want a string array", s.Name, key, v.Value)
		return nil
	}
	var out []string
	for _, e := range arr.Values {
		out = append(out, e.GetStringValue())
	}
	return out
}

// wantDurationMs checks a *.time_ms attribute against the span's own
// duration (whole milliseconds, truncated).
func wantDurationMs(t *testing.T, s otlptest.Span, key string) {
	t.Helper()
	want := int64((s.EndTimeUnixNano - s.StartTimeUnixNano) / 1e6)
	wantInt(t, s, key, want)
}

func wantStatus(t *testing.T, s otlptest.Span, failed bool) {
	t.Helper()
	code := s.GetStatus().GetCode()
	if failed {
		if code != tracepb.Status_STATUS_CODE_ERROR {
			t.Errorf("%s: status %v, want ERROR", s.Name, code)
		}
		wantBool(t, s, "error", true)
		return
	}
	if code == tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("%s: status ERROR (%s), want not failed", s.Name, s.GetStatus().GetMessage())
	}
	if _, ok := s.Attr("error"); ok {
		t.Errorf("%s: has an error attribute on success", s.Name)
	}
}

func wantKind(t *testing.T, s otlptest.Span, kind tracepb.Span_SpanKind) {
	t.Helper()
	if s.Kind != kind {
		t.Errorf("%s: kind %v, want %v", s.Name, s.Kind, kind)
	}
}

func describe(tr *tree) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", tr.root.Name, tr.traceID)
	for _, s := range tr.all {
		if s.SpanIDHex() != tr.root.SpanIDHex() {
			fmt.Fprintf(&b, "  %s\n", s.Name)
		}
	}
	return b.String()
}
