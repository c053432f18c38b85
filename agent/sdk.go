package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
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

// Pipeline replays finished span records into OTel SDK TracerProviders,
// so batching, the resource and the exporters are the SDK's own.
//
// The SDK binds one resource to a TracerProvider, and a span processor
// (with its queue) to one provider, so spans of different processes, which
// need different resources, go through one provider per process (see
// AddProcess), each with its own batch span processor, all in front of one
// shared exporter. One admission gate bounds the spans queued across all
// of them to the configured queue size, so the memory bound does not grow
// with the number of processes; spans past it are dropped and counted.
type Pipeline struct {
	base     *resource.Resource
	settings ExportSettings
	maxProcs int
	exp      *countingExporter

	ended, dropped atomic.Uint64
	// queued counts spans admitted to a batch processor and not yet
	// through an export call: the gate keeps it at most QueueSize, which
	// is also each processor's own queue size, so no processor ever drops
	// on its own and Dropped is exact.
	queued atomic.Int64

	mu      sync.Mutex
	def     *provider
	procs   map[uint32]*provider
	flushes sync.WaitGroup
}

// provider is one TracerProvider and the accounting of its spans.
type provider struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	// admitted and done count this provider's spans into and out of its
	// processor, so spans lost by a provider that could not flush at
	// shutdown are moved from queued to dropped.
	admitted atomic.Uint64
	mu       sync.Mutex
	done     uint64
	// settled is set once shutdown accounted the leftovers as dropped.
	settled bool
}

// ErrTooManyProcesses is returned by AddProcess when the pipeline already
// serves its maximum number of processes.
var ErrTooManyProcesses = errors.New("too many traced processes: raise routerscope.discovery.max_processes or narrow the discovery rules")

// ExportStats counts spans through the SDK.
type ExportStats struct {
	// Ended spans were handed to the pipeline.
	Ended uint64
	// Exported spans were accepted by the exporter.
	Exported uint64
	// Failed spans were in export calls that returned an error.
	Failed uint64
	// Dropped spans never reached the exporter: the export queue was full,
	// or a process's provider could not flush before its deadline.
	Dropped uint64
	// Queued spans wait in a batch processor or are in an export call.
	Queued uint64
}

// NewPipeline builds the default TracerProvider (the config's resource,
// for spans of processes without their own, see AddProcess): a sampler
// that keeps the kernel's decision and a batch span processor in front of
// exp. The pipeline owns exp and shuts it down.
func NewPipeline(cfg Config, exp sdktrace.SpanExporter, onExportError func(error, int)) (*Pipeline, error) {
	res, err := buildResource(cfg.Tracing.Resource)
	if err != nil {
		return nil, err
	}
	abort, abortFn := context.WithCancel(context.Background())
	p := &Pipeline{
		base:     res,
		settings: cfg.Agent.Export,
		maxProcs: cfg.Agent.Discovery.MaxProcesses,
		exp: &countingExporter{inner: exp, onError: onExportError,
			abort: abort, abortFn: abortFn, shutdown: make(chan struct{})},
		procs: map[uint32]*provider{},
	}
	p.def = p.newProvider(res)
	return p, nil
}

func (p *Pipeline) newProvider(res *resource.Resource) *provider {
	pr := &provider{}
	e := p.settings
	bsp := sdktrace.NewBatchSpanProcessor(&providerExporter{pipe: p, prov: pr},
		sdktrace.WithMaxQueueSize(e.QueueSize),
		sdktrace.WithMaxExportBatchSize(e.MaxBatchSize),
		sdktrace.WithBatchTimeout(e.BatchTimeout),
	)
	pr.tp = sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(KernelSampler()),
		sdktrace.WithIDGenerator(kernelIDs{}),
		sdktrace.WithSpanProcessor(&gateProcessor{SpanProcessor: bsp, pipe: p, prov: pr}),
	)
	pr.tracer = pr.tp.Tracer(instrumentationName, trace.WithInstrumentationVersion(Version))
	return pr
}

// AddProcess gives the spans of pid their own resource: the config's
// resource plus attrs (see ProcessResource). An earlier provider of the
// same pid (a reused pid) is flushed in the background.
func (p *Pipeline) AddProcess(pid uint32, attrs []attribute.KeyValue) error {
	res, err := resource.Merge(p.base, resource.NewSchemaless(attrs...))
	if err != nil {
		return fmt.Errorf("build resource of pid %d: %w", pid, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.procs[pid]
	if old == nil && p.maxProcs > 0 && len(p.procs) >= p.maxProcs {
		return fmt.Errorf("%w (%d)", ErrTooManyProcesses, p.maxProcs)
	}
	p.procs[pid] = p.newProvider(res)
	if old != nil {
		p.flushLater(old)
	}
	return nil
}

// RemoveProcess drops the provider of pid, after its last spans were
// emitted, and flushes it in the background within the shutdown timeout
// (a slow collector must not hold up discovery); Shutdown waits for these
// flushes. Later spans of pid get the default resource.
func (p *Pipeline) RemoveProcess(pid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.procs[pid]; old != nil {
		delete(p.procs, pid)
		p.flushLater(old)
	}
}

// SetMaxProcesses changes the bound on processes (a reloaded config);
// processes beyond a lowered bound keep their providers.
func (p *Pipeline) SetMaxProcesses(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.maxProcs = n
}

// flushLater shuts a provider down on its own goroutine; p.mu is held.
func (p *Pipeline) flushLater(pr *provider) {
	p.flushes.Go(func() {
		ctx, cancel := exportContext(context.Background(), p.settings.ShutdownTimeout)
		defer cancel()
		if err := p.shutdownProvider(ctx, pr); err != nil && p.exp.onError != nil {
			p.exp.onError(err, 0)
		}
	})
}

// Processes returns how many processes have their own provider.
func (p *Pipeline) Processes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.procs)
}

func (p *Pipeline) shutdownProvider(ctx context.Context, pr *provider) error {
	err := pr.tp.Shutdown(ctx)
	// Whatever the provider could not export is dropped now: account it,
	// so the queue gauge does not keep counting it.
	pr.mu.Lock()
	left := pr.admitted.Load() - pr.done
	pr.done += left
	pr.settled = true
	pr.mu.Unlock()
	if left > 0 {
		p.queued.Add(-int64(left))
		p.dropped.Add(left)
	}
	if err != nil {
		return fmt.Errorf("flush spans of a process: %w", err)
	}
	return nil
}

func (p *Pipeline) providerFor(pid uint32) *provider {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pr := p.procs[pid]; pr != nil {
		return pr
	}
	return p.def
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
	for _, k := range slices.Sorted(maps.Keys(r.Attributes)) {
		attrs = append(attrs, attribute.String(k, r.Attributes[k]))
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
			TraceState: r.TraceState,
			Remote:     r.RemoteParent,
		}))
	}
	_, span := p.providerFor(r.PID).tracer.Start(ctx, r.Name,
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
	var errs []error
	for _, pr := range p.providers() {
		errs = append(errs, pr.tp.ForceFlush(ctx))
	}
	return errors.Join(errs...)
}

func (p *Pipeline) providers() []*provider {
	p.mu.Lock()
	defer p.mu.Unlock()
	all := []*provider{p.def}
	for _, pr := range p.procs {
		all = append(all, pr)
	}
	return all
}

// Shutdown flushes every provider and shuts the exporter down within
// ctx's deadline.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	var errs []error
	p.mu.Lock()
	all := []*provider{p.def}
	for pid, pr := range p.procs {
		all = append(all, pr)
		delete(p.procs, pid)
	}
	p.mu.Unlock()
	for _, pr := range all {
		errs = append(errs, p.shutdownProvider(ctx, pr))
	}
	p.flushes.Wait()
	// Past the deadline the SDK returns but its export goroutines may still
	// wait on a stalled collector: abort the exports so they end now, and
	// wait for them, so nothing outlives the pipeline.
	p.exp.abortFn()
	done := make(chan struct{})
	go func() {
		p.exp.inflight.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(abortGrace):
	}
	errs = append(errs, p.exp.Shutdown(ctx))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shut down span pipeline: %w", err)
	}
	return nil
}

// abortGrace bounds the wait for aborted exports to return; they fail at
// once, so it is only reached if an exporter ignores its context.
const abortGrace = 5 * time.Second

// Stats returns the pipeline's counters.
func (p *Pipeline) Stats() ExportStats {
	s := ExportStats{Ended: p.ended.Load(), Exported: p.exp.exported.Load(), Failed: p.exp.failed.Load(), Dropped: p.dropped.Load()}
	if q := p.queued.Load(); q > 0 {
		s.Queued = uint64(q)
	}
	return s
}

// ExportHealthy tells whether the last export call succeeded (true before
// the first one): readiness reports it.
func (p *Pipeline) ExportHealthy() bool { return !p.exp.lastFailed.Load() }

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
