package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// printedSpan is the subset of the stdout exporter's JSON that renderTrees
// reads, in either format: the SDK's (Parent, EndTime, typed attribute
// values) or the guide's (ParentSpanID, Duration, plain values).
type printedSpan struct {
	Name         string
	SpanContext  struct{ TraceID, SpanID string }
	Parent       struct{ SpanID string }
	ParentSpanID string
	StartTime    time.Time
	EndTime      time.Time
	Duration     time.Duration
	Attributes   []struct {
		Key   string
		Value printedValue
	}
	Status struct{ Code, Description string }
}

// printedValue is an attribute value: {"Type": ..., "Value": ...} in the
// SDK's format, the bare value in the guide's.
type printedValue struct {
	Type  string
	Value any
}

// UnmarshalJSON reads either form, keeping numbers as written.
func (v *printedValue) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	if obj, ok := raw.(map[string]any); ok {
		if typ, ok := obj["Type"].(string); ok {
			v.Type, v.Value = typ, obj["Value"]
			return nil
		}
	}
	v.Type, v.Value = "", raw
	return nil
}

const zeroSpanID = "0000000000000000"

// maxTreeDepth bounds how deep a tree is drawn: each level widens the
// prefix of every line below it, so a hostile chain of a million spans
// would print gigabytes; deeper spans are counted instead.
const maxTreeDepth = 64

// renderTrees reads spans as the stdout exporter prints them (a stream of
// JSON objects) and writes one indented tree per trace, roots by start
// time, children by start time, each with its duration and attributes. A
// span whose parent is not in the input is shown as a root marked so.
// The input is hostile: a span listed as its own parent, or spans that
// are each other's parents, are drawn once each, a cycle's earliest span
// as a root marked so; trees are drawn to maxTreeDepth levels; numbers
// are printed as written (1234567, not 1.234567e+06).
func renderTrees(r io.Reader, w io.Writer) error {
	dec := json.NewDecoder(r)
	// Keep numbers as written: as float64, integers of 1e6 and more print
	// in exponent form and lose precision past 2^53.
	dec.UseNumber()
	var spans []*printedSpan
	for {
		s := new(printedSpan)
		err := dec.Decode(s)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read span %d: %w", len(spans)+1, err)
		}
		if s.Parent.SpanID == "" {
			s.Parent.SpanID = s.ParentSpanID
		}
		if s.EndTime.IsZero() && s.Duration > 0 {
			s.EndTime = s.StartTime.Add(s.Duration)
		}
		spans = append(spans, s)
	}
	byID := map[string]*printedSpan{}
	children := map[string][]*printedSpan{}
	for _, s := range spans {
		byID[s.SpanContext.TraceID+s.SpanContext.SpanID] = s
	}
	var roots []*printedSpan
	for _, s := range spans {
		parent := s.Parent.SpanID
		if parent == "" || parent == zeroSpanID || parent == s.SpanContext.SpanID || byID[s.SpanContext.TraceID+parent] == nil {
			roots = append(roots, s)
			continue
		}
		key := s.SpanContext.TraceID + parent
		children[key] = append(children[key], s)
	}
	byStart := func(ss []*printedSpan) {
		sort.SliceStable(ss, func(i, j int) bool { return ss[i].StartTime.Before(ss[j].StartTime) })
	}
	byStart(roots)
	drawn := map[*printedSpan]bool{}
	// hide marks the spans below a cut as drawn, without recursion, and
	// counts them.
	hide := func(top []*printedSpan) int {
		n := 0
		stack := append([]*printedSpan(nil), top...)
		for len(stack) > 0 {
			s := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if drawn[s] {
				continue
			}
			drawn[s] = true
			n++
			stack = append(stack, children[s.SpanContext.TraceID+s.SpanContext.SpanID]...)
		}
		return n
	}
	draw := func(root *printedSpan, note string) {
		fmt.Fprintf(w, "trace %s%s\n", root.SpanContext.TraceID, note)
		var walk func(s *printedSpan, prefix, branch string, depth int)
		walk = func(s *printedSpan, prefix, branch string, depth int) {
			drawn[s] = true
			fmt.Fprintf(w, "%s%s%s\n", prefix, branch, describeSpan(s))
			kids := children[s.SpanContext.TraceID+s.SpanContext.SpanID]
			byStart(kids)
			next := prefix
			switch branch {
			case "├─ ":
				next += "│  "
			case "└─ ":
				next += "   "
			}
			if depth >= maxTreeDepth && len(kids) > 0 {
				fmt.Fprintf(w, "%s└─ ... %d deeper spans not shown (more than %d levels)\n", next, hide(kids), maxTreeDepth)
				return
			}
			for i, k := range kids {
				b := "├─ "
				if i == len(kids)-1 {
					b = "└─ "
				}
				if drawn[k] {
					// Only a parent cycle or a repeated span id leads back to
					// a drawn span.
					fmt.Fprintf(w, "%s%s(%s %s already drawn: a parent cycle or a repeated span id)\n", next, b, k.Name, k.SpanContext.SpanID)
					continue
				}
				walk(k, next, b, depth+1)
			}
		}
		walk(root, "", "", 0)
		fmt.Fprintln(w)
	}
	for _, root := range roots {
		note := ""
		switch p := root.Parent.SpanID; {
		case p == root.SpanContext.SpanID:
			note = " (span " + p + " names itself as its parent)"
		case p != "" && p != zeroSpanID:
			note = " (parent " + p + " not in this output)"
		}
		draw(root, note)
	}
	// What is left hangs off a parent cycle: no root leads to it. Draw
	// each cycle from its earliest span.
	var rest []*printedSpan
	for _, s := range spans {
		if !drawn[s] {
			rest = append(rest, s)
		}
	}
	byStart(rest)
	for _, s := range rest {
		if !drawn[s] {
			draw(s, " (parents form a cycle; drawn from its earliest span)")
		}
	}
	return nil
}

// describeSpan is one line: name, duration, status and attributes.
func describeSpan(s *printedSpan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s", s.Name, s.EndTime.Sub(s.StartTime).Round(time.Microsecond))
	if s.Status.Code == "Error" {
		fmt.Fprintf(&b, "  ERROR(%s)", s.Status.Description)
	}
	for _, a := range s.Attributes {
		v := a.Value.Value
		if list, ok := v.([]any); ok {
			parts := make([]string, len(list))
			for i, e := range list {
				parts[i] = fmt.Sprint(e)
			}
			v = "[" + strings.Join(parts, ",") + "]"
		}
		if str, ok := v.(string); ok && strings.ContainsAny(str, " \t") {
			v = fmt.Sprintf("%q", str)
		}
		fmt.Fprintf(&b, " %s=%v", a.Key, v)
	}
	return b.String()
}
