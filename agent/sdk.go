package agent

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// instrumentationName is the tracer scope every replayed span carries.
const instrumentationName = "github.com/routerscope/routerscope/agent"

// Version is the agent's version: `routerscope version` prints it and the
// replayed spans carry it as their instrumentation scope version.
const Version = "0.1.0"

// Pipeline replays finished span records into an OTel SDK TracerProvider,
// so batching, the resource and the exporters are the SDK's own.
type Pipeline struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	ended  atomic.Uint64
	exp    *countingExporter
}

// ExportStats counts spans through the SDK.
type ExportStats struct {
	// Ended spans were handed to the batch processor.
	Ended uint64
	// Exported spans were accepted by the exporter.
	Exported uint64
	// Failed spans were in export calls that returned an error.
	Failed uint64
	// Dropped spans never reached the exporter: the batch queue was full.
	// Exact after Shutdown; before, it also counts spans still queued.
	Dropped uint64
}

// NewPipeline builds the TracerProvider: the config's resource, a sampler
// that keeps the kernel's decision, and a batch span processor with a
// bounded queue in front of exp. The pipeline owns exp and shuts it down.
func NewPipeline(cfg Config, exp sdktrace.SpanExporter, onExportError func(error, int)) (*Pipeline, error) {
	res, err := buildResource(cfg.Tracing.Resource)
	if err != nil {
		return nil, err
	}
	abort, abortFn := context.WithCancel(context.Background())
	p := &Pipeline{exp: &countingExporter{inner: exp, onError: onExportError,
		abort: abort, abortFn: abortFn, shutdown: make(chan struct{})}}
	e := cfg.Agent.Export
	bsp := sdktrace.NewBatchSpanProcessor(p.exp,
		sdktrace.WithMaxQueueSize(e.QueueSize),
		sdktrace.WithMaxExportBatchSize(e.MaxBatchSize),
		sdktrace.WithBatchTimeout(e.BatchTimeout),
	)
	p.tp = sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(KernelSampler()),
		sdktrace.WithIDGenerator(kernelIDs{}),
		sdktrace.WithSpanProcessor(&countingProcessor{SpanProcessor: bsp, ended: &p.ended}),
	)
	p.tracer = p.tp.Tracer(instrumentationName, trace.WithInstrumentationVersion(Version))
	return p, nil
}

// buildResource merges the SDK's default resource (telemetry.sdk.*) with
// the guide's resource keys.
func buildResource(r Resource) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{attribute.String("service.name", r.ServiceName)}
	if r.ServiceVersion != "" {
		attrs = append(attrs, attribute.String("service.version", r.ServiceVersion))
	}
	if r.DeploymentEnvironment != "" {
		// Both the current semantic-convention key and the older one the
		// guide's router era used, so either kind of backend query finds it.
		attrs = append(attrs,
			attribute.String("deployment.environment.name", r.DeploymentEnvironment),
			attribute.String("deployment.environment", r.DeploymentEnvironment))
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attrs...))
	if err != nil {
		return nil, fmt.Errorf("build resource: %w", err)
	}
	return res, nil
}

// Emit replays one finished span: the ids come from the kernel through the
// context (see kernelIDs), the parent through ContextWithSpanContext, and
// the exact start and end times through WithTimestamp.
func (p *Pipeline) Emit(r SpanRecord) {
	ctx := context.WithValue(context.Background(), recordKey{}, &r)
	if r.ParentSpanID.IsValid() {
		flags := trace.TraceFlags(0)
		if r.Sampled {
			flags = trace.FlagsSampled
		}
		ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID:    r.TraceID,
			SpanID:     r.ParentSpanID,
			TraceFlags: flags,
			Remote:     r.RemoteParent,
		}))
	}
	_, span := p.tracer.Start(ctx, r.Name,
		trace.WithTimestamp(r.Start),
		trace.WithSpanKind(r.Kind),
		trace.WithAttributes(r.Attributes...),
	)
	if r.Failed {
		span.SetStatus(codes.Error, r.StatusMessage)
	}
	span.End(trace.WithTimestamp(r.End))
}

// ForceFlush exports every queued span.
func (p *Pipeline) ForceFlush(ctx context.Context) error {
	return p.tp.ForceFlush(ctx)
}

// Shutdown flushes the queue and shuts the exporter down within ctx's
// deadline.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	err := p.tp.Shutdown(ctx)
	// Past the deadline the SDK returns but its export goroutine may still
	// wait on a stalled collector: abort the exports so that goroutine ends
	// now, and wait for it, so nothing outlives the pipeline.
	p.exp.abortFn()
	select {
	case <-p.exp.shutdown:
	case <-time.After(abortGrace):
	}
	if err != nil {
		return fmt.Errorf("shut down span pipeline: %w", err)
	}
	return nil
}

// abortGrace bounds the wait for aborted exports to return; they fail at
// once, so it is only reached if an exporter ignores its context.
const abortGrace = 5 * time.Second

// Stats returns the pipeline's counters.
func (p *Pipeline) Stats() ExportStats {
	s := ExportStats{Ended: p.ended.Load(), Exported: p.exp.exported.Load(), Failed: p.exp.failed.Load()}
	if done := s.Exported + s.Failed; s.Ended > done {
		s.Dropped = s.Ended - done
	}
	return s
}

// recordKey carries the span record being replayed to the ID generator
// and the sampler, which the SDK calls synchronously inside Start.
type recordKey struct{}

func recordFrom(ctx context.Context) *SpanRecord {
	r, _ := ctx.Value(recordKey{}).(*SpanRecord)
	return r
}

// kernelIDs is an IDGenerator that returns the ids the kernel assigned,
// so exported spans keep the trace and span ids the traced process (and
// any propagated traceparent) used.
type kernelIDs struct{}

func (kernelIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if r := recordFrom(ctx); r != nil {
		return r.TraceID, r.SpanID
	}
	// Not reachable through Emit; zero ids make the SDK produce an invalid
	// span rather than an id that collides with a kernel one.
	return trace.TraceID{}, trace.SpanID{}
}

func (kernelIDs) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if r := recordFrom(ctx); r != nil {
		return r.SpanID
	}
	return trace.SpanID{}
}

// KernelSampler is the SDK-side sampler: the decision was made once per
// trace in the kernel at the root span (events are only emitted for
// sampled traces), so the SDK keeps it. A span with a parent follows the
// parent's sampled flag (ParentBased); a root follows the kernel's flag on
// its events.
func KernelSampler() sdktrace.Sampler {
	return sdktrace.ParentBased(kernelRoot{})
}

type kernelRoot struct{}

func (kernelRoot) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if r := recordFrom(p.ParentContext); r != nil && !r.Sampled {
		return sdktrace.SamplingResult{Decision: sdktrace.Drop}
	}
	return sdktrace.SamplingResult{
		Decision:   sdktrace.RecordAndSample,
		Tracestate: trace.SpanContextFromContext(p.ParentContext).TraceState(),
	}
}

func (kernelRoot) Description() string { return "KernelDecision" }

// countingProcessor counts spans handed to the batch processor, so drops
// (queue full) can be computed against what the exporter saw.
type countingProcessor struct {
	sdktrace.SpanProcessor
	ended *atomic.Uint64
}

func (c *countingProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	c.ended.Add(1)
	c.SpanProcessor.OnEnd(s)
}

// countingExporter counts exported and failed spans and reports export
// errors to the agent's rate-limited logger instead of the SDK's global
// error handler.
type countingExporter struct {
	inner            sdktrace.SpanExporter
	onError          func(err error, spans int)
	exported, failed atomic.Uint64
	// abort cancels every export when the shutdown deadline has passed.
	abort    context.Context
	abortFn  context.CancelFunc
	shutdown chan struct{} // closed when the SDK has shut the exporter down
	once     sync.Once
}

func (c *countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.abort, cancel)
	defer stop()
	if err := c.inner.ExportSpans(ctx, spans); err != nil {
		c.failed.Add(uint64(len(spans)))
		if c.onError != nil {
			c.onError(err, len(spans))
		}
		// Reported above; returning it would also send it to the SDK's
		// global handler, unthrottled.
		return nil
	}
	c.exported.Add(uint64(len(spans)))
	return nil
}

func (c *countingExporter) Shutdown(ctx context.Context) error {
	defer c.once.Do(func() { close(c.shutdown) })
	return c.inner.Shutdown(ctx)
}
