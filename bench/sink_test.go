package main

import (
	"context"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

func TestSinkDurationsByName(t *testing.T) {
	s := &sink{byName: map[string]durations{}}
	req := func(spans ...*tracepb.Span) *collectorpb.ExportTraceServiceRequest {
		return &collectorpb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}}}}}
	}
	span := func(name string, d time.Duration) *tracepb.Span {
		return &tracepb.Span{Name: name, StartTimeUnixNano: 1000, EndTimeUnixNano: 1000 + uint64(d)}
	}
	if _, err := s.Export(context.Background(), req(span("a", time.Millisecond), span("b", 3*time.Millisecond))); err != nil {
		t.Fatal(err)
	}
	before := s.durationsByName()
	if _, err := s.Export(context.Background(), req(span("a", 3*time.Millisecond), span("a", 5*time.Millisecond))); err != nil {
		t.Fatal(err)
	}
	run := spanDurations(before, s.durationsByName())
	if len(run) != 1 || run["a"].Count != 2 || run["a"].Mean() != 4*time.Millisecond {
		t.Fatalf("durations of the second export: %+v", run)
	}
	if s.spans.Load() != 4 {
		t.Fatalf("counted %d spans, want 4", s.spans.Load())
	}
}
