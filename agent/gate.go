package agent

import (
	"context"
	"sync"
	"sync/atomic"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// This file holds the accounting around the SDK's batch span processors
// and the shared exporter: the admission gate that bounds the queue over
// all providers, and the counters of exported, failed and dropped spans.

// gateProcessor admits a span to its provider's batch processor only
// while the pipeline-wide queue has room, so the bound holds across all
// providers and a full queue drops (counted) instead of blocking.
type gateProcessor struct {
	sdktrace.SpanProcessor
	pipe *Pipeline
	prov *provider
}

func (g *gateProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	p := g.pipe
	p.ended.Add(1)
	if p.queued.Add(1) > int64(p.settings.QueueSize) {
		p.queued.Add(-1)
		p.dropped.Add(1)
		return
	}
	g.prov.admitted.Add(1)
	g.SpanProcessor.OnEnd(s)
}

// providerExporter is one provider's view of the shared exporter: it
// releases the gate as batches leave, and its Shutdown leaves the shared
// exporter running for the other providers.
type providerExporter struct {
	pipe *Pipeline
	prov *provider
}

func (e *providerExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.pipe.exp.ExportSpans(ctx, spans)
	n := uint64(len(spans))
	pr := e.prov
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.settled {
		// An export that outlived its provider's shutdown deadline: its
		// spans were counted dropped then, and are counted exported or
		// failed now; undo the drop so each span counts once.
		e.pipe.dropped.Add(^(n - 1))
		return err
	}
	pr.done += n
	e.pipe.queued.Add(-int64(n))
	return err
}

func (e *providerExporter) Shutdown(context.Context) error { return nil }

// countingExporter counts exported and failed spans and reports export
// errors to the agent's rate-limited logger instead of the SDK's global
// error handler.
type countingExporter struct {
	inner            sdktrace.SpanExporter
	onError          func(err error, spans int)
	exported, failed atomic.Uint64
	lastFailed       atomic.Bool
	// abort cancels every export when the shutdown deadline has passed.
	abort    context.Context
	abortFn  context.CancelFunc
	inflight sync.WaitGroup
	shutdown chan struct{} // closed when the exporter was shut down
	once     sync.Once
}

func (c *countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	c.inflight.Add(1)
	defer c.inflight.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.abort, cancel)
	defer stop()
	if err := c.inner.ExportSpans(ctx, spans); err != nil {
		c.failed.Add(uint64(len(spans)))
		c.lastFailed.Store(true)
		if c.onError != nil {
			c.onError(err, len(spans))
		}
		// Reported above; returning it would also send it to the SDK's
		// global handler, unthrottled.
		return nil
	}
	c.exported.Add(uint64(len(spans)))
	c.lastFailed.Store(false)
	return nil
}

func (c *countingExporter) Shutdown(ctx context.Context) error {
	var err error
	c.once.Do(func() {
		err = c.inner.Shutdown(ctx)
		close(c.shutdown)
	})
	return err
}
