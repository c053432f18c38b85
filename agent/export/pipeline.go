package export

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
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/agent/spans"
)

// instrumentationName is the instrumentation scope every exported span
// carries.
const instrumentationName = "github.com/routerscope/routerscope/agent"

// Version is the agent's version: `routerscope version` prints it and the
// exported spans carry it as their instrumentation scope version.
const Version = "0.1.0"

// Pipeline batches finished span records and hands each batch to a sink:
// the OTLP encoder (NewOTLPPipeline) or an SDK span exporter (NewPipeline,
// the stdout exporter). One bounded queue serves every process, so the
// memory bound does not grow with the number of processes; spans past it
// are dropped and counted, never waited for. Each span keeps the resource
// of its process as registered when it was emitted (see AddProcess).
//
// One goroutine owns the batch: it sleeps on the queue and arms the batch
// timer only while a batch is pending, so an idle pipeline does no
// periodic work.
type Pipeline struct {
	base     *procResource
	settings config.ExportSettings
	sink     batchSink
	onError  func(err error, spans int)

	queue    chan queuedSpan
	flushReq chan chan struct{}
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	// abort cancels the export in flight when the shutdown deadline passed.
	abort   context.Context
	abortFn context.CancelFunc

	ended, exported, failed, dropped atomic.Uint64
	// queued counts spans in the queue, in the pending batch or in an
	// export call; Emit keeps it at most QueueSize.
	queued     atomic.Int64
	lastFailed atomic.Bool

	mu       sync.Mutex
	maxProcs int
	procs    map[uint32]*procResource
	closed   bool
}

// procResource is one resource in the forms the sinks need, built once
// when its process is registered.
type procResource struct {
	res *resource.Resource
	// enc is the OTLP form, built by the OTLP sink on first use and only
	// touched by the export goroutine.
	enc any
}

// queuedSpan is one span waiting for export with the resource it goes out
// under.
type queuedSpan struct {
	rec spans.SpanRecord
	res *procResource
}

// batchSink sends one batch; the pipeline calls it from one goroutine.
type batchSink interface {
	// export sends batch; it must not keep batch or anything in it after
	// returning.
	export(ctx context.Context, batch []queuedSpan) error
	shutdown(ctx context.Context) error
}

// ErrTooManyProcesses is returned by AddProcess when the pipeline already
// serves its maximum number of processes.
var ErrTooManyProcesses = errors.New("too many traced processes: raise routerscope.discovery.max_processes or narrow the discovery rules")

// Stats counts spans through the pipeline.
type Stats struct {
	// Ended spans were handed to the pipeline (sampled ones only).
	Ended uint64
	// Exported spans were accepted by the exporter.
	Exported uint64
	// Failed spans were in export calls that returned an error.
	Failed uint64
	// Dropped spans never reached the exporter: the export queue was full,
	// or the shutdown deadline passed before they were sent.
	Dropped uint64
	// Queued spans wait in the queue or the pending batch, or are in an
	// export call.
	Queued uint64
}

func newPipeline(cfg config.Config, sink batchSink, onExportError func(error, int)) (*Pipeline, error) {
	res, err := buildResource(cfg.Tracing.Resource)
	if err != nil {
		return nil, err
	}
	e := cfg.Agent.Export
	if e.QueueSize <= 0 || e.MaxBatchSize <= 0 || e.BatchTimeout <= 0 {
		return nil, fmt.Errorf("%w: routerscope.export: queue_size, max_batch_size and batch_timeout must be positive", config.ErrConfig)
	}
	abort, abortFn := context.WithCancel(context.Background())
	p := &Pipeline{
		base:     &procResource{res: res},
		settings: e,
		sink:     sink,
		onError:  onExportError,
		queue:    make(chan queuedSpan, e.QueueSize),
		flushReq: make(chan chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		abort:    abort,
		abortFn:  abortFn,
		maxProcs: cfg.Agent.Discovery.MaxProcesses,
		procs:    map[uint32]*procResource{},
	}
	go p.run()
	return p, nil
}

// AddProcess gives the spans of pid their own resource: the config's
// resource plus attrs (see ProcessResource). Spans of an earlier process
// with the same pid (a reused pid) already queued keep their resource.
func (p *Pipeline) AddProcess(pid uint32, attrs []attribute.KeyValue) error {
	res, err := resource.Merge(p.base.res, resource.NewSchemaless(attrs...))
	if err != nil {
		return fmt.Errorf("build resource of pid %d: %w", pid, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.procs[pid]; !ok && p.maxProcs > 0 && len(p.procs) >= p.maxProcs {
		return fmt.Errorf("%w (%d)", ErrTooManyProcesses, p.maxProcs)
	}
	p.procs[pid] = &procResource{res: res}
	return nil
}

// RemoveProcess forgets the resource of pid, after its last spans were
// emitted; spans already queued keep it. Later spans of pid get the
// default resource.
func (p *Pipeline) RemoveProcess(pid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.procs, pid)
}

// SetMaxProcesses changes the bound on processes (a reloaded config);
// processes beyond a lowered bound keep their resources.
func (p *Pipeline) SetMaxProcesses(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.maxProcs = n
}

// Processes returns how many processes have their own resource.
func (p *Pipeline) Processes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.procs)
}

// buildResource merges the SDK's default resource (telemetry.sdk.*) with
// the guide's resource keys.
func buildResource(r config.Resource) (*resource.Resource, error) {
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

// Emit queues one finished span for export without blocking: a full queue
// drops it (counted). The kernel decided sampling once per trace at the
// root and flags every event of the trace, so an unsampled record is not
// exported (nor counted as ended), as the SDK's parent-based sampler
// would have it.
func (p *Pipeline) Emit(r spans.SpanRecord) {
	if !r.Sampled {
		return
	}
	p.ended.Add(1)
	// Held over the send (which never blocks, see below) so no span slips
	// into the queue after Shutdown drained it.
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		p.dropped.Add(1)
		return
	}
	res := p.procs[r.PID]
	if res == nil {
		res = p.base
	}
	// The bound counts the pending batch and the export in flight too, so
	// at most QueueSize spans are held whatever the exporter does; the
	// channel, as long as the bound, then never blocks.
	if p.queued.Add(1) > int64(p.settings.QueueSize) {
		p.queued.Add(-1)
		p.dropped.Add(1)
		return
	}
	p.queue <- queuedSpan{rec: r, res: res}
}

// run owns the pending batch until Shutdown: it exports a batch when it
// is full, when the batch timeout after its first span passes, on
// ForceFlush, and at shutdown.
func (p *Pipeline) run() {
	defer close(p.done)
	batch := make([]queuedSpan, 0, p.settings.MaxBatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		if len(batch) > 0 {
			p.export(batch)
			clear(batch) // let the attributes go
			batch = batch[:0]
		}
		timer.Stop()
	}
	for {
		select {
		case q := <-p.queue:
			batch = append(batch, q)
			if len(batch) == 1 {
				timer.Reset(p.settings.BatchTimeout)
			}
			if len(batch) >= p.settings.MaxBatchSize {
				flush()
			}
		case <-timer.C:
			flush()
		case ack := <-p.flushReq:
			p.drain(&batch, flush)
			close(ack)
		case <-p.stop:
			p.drain(&batch, flush)
			return
		}
	}
}

// drain exports what is queued now, batch by batch; past the abort (the
// shutdown deadline) it drops instead.
func (p *Pipeline) drain(batch *[]queuedSpan, flush func()) {
	for {
		select {
		case q := <-p.queue:
			*batch = append(*batch, q)
			if len(*batch) >= p.settings.MaxBatchSize {
				flush()
			}
		default:
			flush()
			return
		}
	}
}

func (p *Pipeline) export(batch []queuedSpan) {
	n := uint64(len(batch))
	defer p.queued.Add(-int64(n))
	if p.abort.Err() != nil {
		p.dropped.Add(n)
		return
	}
	if err := p.sink.export(p.abort, batch); err != nil {
		p.failed.Add(n)
		p.lastFailed.Store(true)
		if p.onError != nil {
			p.onError(err, int(n))
		}
		return
	}
	p.exported.Add(n)
	p.lastFailed.Store(false)
}

// ForceFlush exports every queued span.
func (p *Pipeline) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case p.flushReq <- ack:
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flush spans: %w", ctx.Err())
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flush spans: %w", ctx.Err())
	}
}

// Shutdown exports the queued spans and shuts the sink down within ctx's
// deadline; past it, the export in flight is aborted and the spans not
// sent are dropped (counted). Spans emitted after it are dropped.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	var errs []error
	p.stopOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		close(p.stop)
	})
	select {
	case <-p.done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("flush spans: %w", ctx.Err()))
		// Past the deadline: abort the export in flight (a stalled
		// collector) so the goroutine ends now and nothing outlives the
		// pipeline.
		p.abortFn()
		select {
		case <-p.done:
		case <-time.After(abortGrace):
		}
	}
	p.abortFn()
	errs = append(errs, p.sink.shutdown(ctx))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shut down span pipeline: %w", err)
	}
	return nil
}

// abortGrace bounds the wait for an aborted export to return; it fails at
// once, so it is only reached if an exporter ignores its context.
const abortGrace = 5 * time.Second

// Stats returns the pipeline's counters.
func (p *Pipeline) Stats() Stats {
	s := Stats{Ended: p.ended.Load(), Exported: p.exported.Load(), Failed: p.failed.Load(), Dropped: p.dropped.Load()}
	if q := p.queued.Load(); q > 0 {
		s.Queued = uint64(q)
	}
	return s
}

// QueueSize is the bound of the queue: routerscope.export.queue_size as
// the pipeline was built with, fixed for its life.
func (p *Pipeline) QueueSize() int { return p.settings.QueueSize }

// ExportHealthy tells whether the last export call succeeded (true before
// the first one): readiness reports it.
func (p *Pipeline) ExportHealthy() bool { return !p.lastFailed.Load() }
