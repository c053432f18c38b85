package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// printedSpan is the subset of the stdout exporter's JSON that RenderTrees
// reads.
type printedSpan struct {
	Name        string
	SpanContext struct{ TraceID, SpanID string }
	Parent      struct{ SpanID string }
	StartTime   time.Time
	EndTime     time.Time
	Attributes  []struct {
		Key   string
		Value struct {
			Type  string
			Value any
		}
	}
	Status struct{ Code, Description string }
}

const zeroSpanID = "0000000000000000"

// RenderTrees reads spans as the stdout exporter prints them (a stream of
// JSON objects) and writes one indented tree per trace, roots by start
// time, children by start time, each with its duration and attributes. A
// span whose parent is not in the input is shown as a root marked so.
func RenderTrees(r io.Reader, w io.Writer) error {
	dec := json.NewDecoder(r)
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
		if parent == "" || parent == zeroSpanID || byID[s.SpanContext.TraceID+parent] == nil {
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
	for _, root := range roots {
		note := ""
		if p := root.Parent.SpanID; p != "" && p != zeroSpanID {
			note = " (parent " + p + " not in this output)"
		}
		fmt.Fprintf(w, "trace %s%s\n", root.SpanContext.TraceID, note)
		var walk func(s *printedSpan, prefix, branch string)
		walk = func(s *printedSpan, prefix, branch string) {
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
			for i, k := range kids {
				b := "├─ "
				if i == len(kids)-1 {
					b = "└─ "
				}
				walk(k, next, b)
			}
		}
		walk(root, "", "")
		fmt.Fprintln(w)
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
