package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// spanJSON is one span as the stdout exporter prints it, reduced to what
// renderTrees reads.
func spanJSON(name, trace, id, parent, attrs string) string {
	return fmt.Sprintf(`{"Name":%q,"SpanContext":{"TraceID":%q,"SpanID":%q},"Parent":{"SpanID":%q},`+
		`"StartTime":"2026-01-01T00:00:00Z","EndTime":"2026-01-01T00:00:00.001Z","Attributes":[%s],"Status":{"Code":"Unset"}}`,
		name, trace, id, parent, attrs)
}

const treeTrace = "0102030405060708090a0b0c0d0e0f10"

func render(t *testing.T, in string) string {
	t.Helper()
	var out bytes.Buffer
	if err := renderTrees(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestRenderTreesSelfParent: a span listed as its own parent is drawn
// once, as a root saying so (it used to recurse without end).
func TestRenderTreesSelfParent(t *testing.T) {
	got := render(t, spanJSON("loop", treeTrace, "00000000000000aa", "00000000000000aa", ""))
	if strings.Count(got, "loop") != 1 || !strings.Contains(got, "names itself as its parent") {
		t.Errorf("got:\n%s", got)
	}
}

// TestRenderTreesTwoSpanCycle: two spans that are each other's parents
// are both drawn (nothing was printed before).
func TestRenderTreesTwoSpanCycle(t *testing.T) {
	in := spanJSON("a", treeTrace, "00000000000000aa", "00000000000000bb", "") +
		spanJSON("b", treeTrace, "00000000000000bb", "00000000000000aa", "")
	got := render(t, in)
	if !strings.Contains(got, "a  1ms") || !strings.Contains(got, "b  1ms") || !strings.Contains(got, "cycle") {
		t.Errorf("got:\n%s", got)
	}
	if len(got) > 1000 {
		t.Errorf("%d bytes for two spans", len(got))
	}
}

// TestRenderTreesDepthBounded: a chain of spans deeper than maxTreeDepth
// is cut, so the output grows linearly, not with the square of the depth.
func TestRenderTreesDepthBounded(t *testing.T) {
	var b strings.Builder
	const n = 5000
	for i := range n {
		parent := ""
		if i > 0 {
			parent = fmt.Sprintf("%016x", i)
		}
		b.WriteString(spanJSON(fmt.Sprintf("s%d", i), treeTrace, fmt.Sprintf("%016x", i+1), parent, ""))
	}
	got := render(t, b.String())
	if !strings.Contains(got, "deeper spans not shown") {
		t.Error("no cut")
	}
	if lines := strings.Count(got, "\n"); lines > maxTreeDepth+10 {
		t.Errorf("%d lines", lines)
	}
	if len(got) > 64<<10 {
		t.Errorf("%d bytes of output for a %d-span chain", len(got), n)
	}
}

// TestRenderTreesIntegers: integers print as written, exactly, however
// large (they printed as 1.234567e+06 and lost precision past 2^53).
func TestRenderTreesIntegers(t *testing.T) {
	attrs := `{"Key":"tokens","Value":{"Type":"INT64","Value":1234567}},` +
		`{"Key":"big","Value":{"Type":"INT64","Value":9007199254740993}},` +
		`{"Key":"list","Value":{"Type":"INT64SLICE","Value":[1000000,2]}},` +
		`{"Key":"ratio","Value":{"Type":"FLOAT64","Value":0.5}}`
	got := render(t, spanJSON("s", treeTrace, "00000000000000aa", "", attrs))
	for _, want := range []string{"tokens=1234567", "big=9007199254740993", "list=[1000000,2]", "ratio=0.5"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
}

// FuzzRenderTrees: any input renders or fails with an error; the output
// of n spans is bounded (each span drawn once, at most maxTreeDepth
// levels of indentation), whatever their parents say.
func FuzzRenderTrees(f *testing.F) {
	f.Add([]byte(spanJSON("a", treeTrace, "00000000000000aa", "00000000000000aa", "")))
	f.Add([]byte(spanJSON("a", treeTrace, "00000000000000aa", "00000000000000bb", "") + spanJSON("b", treeTrace, "00000000000000bb", "00000000000000aa", "")))
	f.Add([]byte(spanJSON("n", treeTrace, "01", "", `{"Key":"k","Value":{"Type":"INT64","Value":123456789012345678}}`)))
	f.Add([]byte(`{"Name": "a"} {"Name": `))
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		if err := renderTrees(bytes.NewReader(data), &out); err != nil {
			return
		}
		spans := bytes.Count(data, []byte("{")) + 1 // at least one brace per span
		if lines := strings.Count(out.String(), "\n"); lines > 4*spans+4 {
			t.Fatalf("%d lines of output for at most %d spans", lines, spans)
		}
	})
}
