package spans_test

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"

	"github.com/routerscope/routerscope/agent/spans"
	"github.com/routerscope/routerscope/agent/spans/spantest"
	"github.com/routerscope/routerscope/probes"
)

// TestTruncatedValuesAreMarked: a value the kernel cut at its copy bound,
// or an attribute's max_bytes cut, carries "<name>.truncated" = true beside
// it, and the cut falls on a character boundary; whole values get no
// companion.
func TestTruncatedValuesAreMarked(t *testing.T) {
	p := &probes.Resolved{
		Spec: probes.Probe{Symbol: "main.f", Span: "f", Attributes: []probes.Attribute{
			{Name: "prompt", From: "arg:0"},
			{Name: "user.id", From: "arg:1", MaxBytes: 4},
			{Name: "model", From: "arg:2", MaxBytes: 16},
			{Name: "tags", From: "arg:3", MaxBytes: 3},
		}},
		Entry: []probes.Fetch{
			{Attr: 0, Kind: probes.KindString}, {Attr: 1, Kind: probes.KindString},
			{Attr: 2, Kind: probes.KindString}, {Attr: 3, Kind: probes.KindStringSlice},
		},
		ParentID: -1,
	}
	cut := spantest.Str(strings.Repeat("p", probes.MaxStringBytes))
	cut.Truncated = true // as decoded from a longer string
	ev := spantest.Entry(p, 1, spantest.TraceID(1), spantest.SpanID(1), [8]byte{}, spantest.BaseTime, cut, spantest.Str("us\u00e9r-42"), spantest.Str("gpt-4o"), spantest.Strs("ab", "\u20acx"))
	r := spans.BuildRecord(ev, nil, spantest.BaseTime, false, "")
	got := spantest.AttrMap(r.Attributes)
	want := map[string]attribute.Value{
		"prompt":            attribute.StringValue(strings.Repeat("p", probes.MaxStringBytes)),
		"prompt.truncated":  attribute.BoolValue(true),
		"user.id":           attribute.StringValue("us\u00e9"), // 4 bytes: u, s, é
		"user.id.truncated": attribute.BoolValue(true),
		"model":             attribute.StringValue("gpt-4o"),
		"tags":              attribute.StringSliceValue([]string{"ab", "\u20ac"}),
		"tags.truncated":    attribute.BoolValue(true),
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s = %v, want %v", k, g.Emit(), w.Emit())
		}
	}
	if _, ok := got["model.truncated"]; ok {
		t.Error("a whole value got a truncated marker")
	}
	if len(got) != len(want) {
		t.Errorf("attributes %v, want %d", got, len(want))
	}
}
