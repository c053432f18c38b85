package export

import (
	"context"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/routerscope/routerscope/agent/config"
)

// NewPipeline builds a pipeline whose batches go to an SDK span exporter
// (the stdout exporter, or any other sdktrace.SpanExporter): each record
// becomes a read-only span snapshot with the kernel's ids and times, its
// process's resource and the agent's scope, as the SDK would have made
// it. The pipeline owns exp and shuts it down.
func NewPipeline(cfg config.Config, exp sdktrace.SpanExporter, onExportError func(error, int)) (*Pipeline, error) {
	return newPipeline(cfg, &sdkSink{exp: exp}, onExportError)
}

// sdkSink converts records to SDK span snapshots. It is the SDK path kept
// for exporters that only come as sdktrace.SpanExporter; OTLP goes
// through otlpSink, which does not build snapshots.
type sdkSink struct {
	exp   sdktrace.SpanExporter
	spans []sdktrace.ReadOnlySpan
}

// agentScope is the instrumentation scope of every exported span.
var agentScope = instrumentation.Scope{Name: instrumentationName, Version: Version}

func (s *sdkSink) export(ctx context.Context, batch []queuedSpan) error {
	s.spans = s.spans[:0]
	for i := range batch {
		s.spans = append(s.spans, snapshot(&batch[i]))
	}
	err := s.exp.ExportSpans(ctx, s.spans)
	clear(s.spans)
	return err
}

func (s *sdkSink) shutdown(ctx context.Context) error { return s.exp.Shutdown(ctx) }

// snapshot is the span the SDK would have ended for q.
func snapshot(q *queuedSpan) sdktrace.ReadOnlySpan {
	r := &q.rec
	flags := trace.TraceFlags(0)
	if r.Sampled {
		flags = trace.FlagsSampled
	}
	stub := tracetest.SpanStub{
		Name: r.Name,
		SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: r.TraceID, SpanID: r.SpanID, TraceFlags: flags, TraceState: r.TraceState}),
		SpanKind:             r.Kind,
		StartTime:            r.Start,
		EndTime:              r.End,
		Resource:             q.res.res,
		InstrumentationScope: agentScope,
	}
	if r.ParentSpanID.IsValid() {
		stub.Parent = trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: r.TraceID, SpanID: r.ParentSpanID, TraceFlags: flags, Remote: r.RemoteParent})
	}
	if len(r.Attributes) > 0 {
		attrs, dropped := exportAttrs(r.Attributes, nil)
		stub.Attributes, stub.DroppedAttributes = attrs, dropped
	}
	if r.Failed {
		stub.Status = sdktrace.Status{Code: codes.Error, Description: r.StatusMessage}
	}
	return stub.Snapshot()
}
