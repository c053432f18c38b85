package export

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// guideSpan is one span as the guide's console example prints it: Name,
// SpanContext, Attributes with plain values, Duration in nanoseconds; plus
// what a reader needs to place it in its trace (the parent, the start, the
// status of a failed span, the caller's tracestate).
type guideSpan struct {
	Name         string
	SpanContext  guideContext
	ParentSpanID string `json:",omitempty"`
	Kind         string
	StartTime    time.Time
	Attributes   []guideAttr
	Status       *guideStatus `json:",omitempty"`
	Duration     time.Duration
}

type guideContext struct {
	TraceID    string
	SpanID     string
	TraceState string `json:",omitempty"`
}

type guideAttr struct {
	Key   string
	Value any
}

type guideStatus struct {
	Code        string
	Description string `json:",omitempty"`
}

// guideExporter writes each span as an indented JSON object in the guide's
// console format.
type guideExporter struct {
	mu sync.Mutex
	w  io.Writer
}

func newGuideExporter(w io.Writer) *guideExporter { return &guideExporter{w: w} }

// ExportSpans writes the spans in order; the first write error ends the
// call.
func (e *guideExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.w == nil {
		return nil
	}
	enc := json.NewEncoder(e.w)
	enc.SetIndent("", "  ")
	for _, s := range spans {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := enc.Encode(toGuideSpan(s)); err != nil {
			return fmt.Errorf("write span %s: %w", s.Name(), err)
		}
	}
	return nil
}

// Shutdown stops further writes.
func (e *guideExporter) Shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.w = nil
	return nil
}

func toGuideSpan(s sdktrace.ReadOnlySpan) guideSpan {
	sc := s.SpanContext()
	g := guideSpan{
		Name: s.Name(),
		SpanContext: guideContext{
			TraceID:    sc.TraceID().String(),
			SpanID:     sc.SpanID().String(),
			TraceState: sc.TraceState().String(),
		},
		Kind:       s.SpanKind().String(),
		StartTime:  s.StartTime(),
		Attributes: make([]guideAttr, 0, len(s.Attributes())),
		Duration:   s.EndTime().Sub(s.StartTime()),
	}
	if p := s.Parent(); p.SpanID().IsValid() {
		g.ParentSpanID = p.SpanID().String()
	}
	for _, kv := range s.Attributes() {
		g.Attributes = append(g.Attributes, guideAttr{Key: string(kv.Key), Value: kv.Value.AsInterface()})
	}
	if st := s.Status(); st.Code == codes.Error {
		g.Status = &guideStatus{Code: "Error", Description: st.Description}
	}
	return g
}
