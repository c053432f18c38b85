package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/routerscope/routerscope/probes"
)

// Structured log field keys: constant so logs can be queried.
const (
	LogKeyTarget     = "target"
	LogKeyPID        = "pid"
	LogKeyEndpoint   = "endpoint"
	LogKeyExporter   = "exporter"
	LogKeySampling   = "sampling"
	LogKeyRatio      = "sample_ratio"
	LogKeyFailed     = "failed_spans"
	LogKeySuppressed = "suppressed_errors"
	LogKeyLost       = "lost_events"
	LogKeyCount      = "count"
	LogKeyReason     = "reason"
	LogKeyProbes     = "probes"
	LogKeyConfig     = "config"
	LogKeyTimeout    = "timeout"
	// Counters logged when the agent stops (see AssemblerStats).
	LogKeyFinished   = "spans_finished"
	LogKeyLostEntry  = "returns_without_entry"
	LogKeyExpired    = "spans_expired"
	LogKeyExited     = "spans_process_exited"
	LogKeyAbandoned  = "spans_abandoned"
	LogKeyExported   = "spans_exported"
	LogKeyExportFail = "spans_export_failed"
	LogKeyDropped    = "spans_dropped_queue_full"
)

// EventSource is an attached capture: the kernel events of one target.
// The capture engine's Tracer satisfies it.
type EventSource interface {
	// Read blocks for the next event; it returns an error when ctx ends or
	// the source is closed or its target is gone.
	Read(ctx context.Context) (probes.Event, error)
	// Lost is the number of events the kernel could not deliver (ring
	// buffer full).
	Lost() uint64
	// Close detaches; it is idempotent.
	Close() error
}

// AttachRequest is what an Attacher needs to start capturing one target.
type AttachRequest struct {
	// Target always has a PID: binary targets are expanded to their running
	// processes first, keeping Binary set so the attacher can skip the
	// executable lookup.
	Target Target
	// Probes are the probe spec files to resolve against the target.
	Probes []string
	// SampleRatio is the fraction of traces the kernel keeps, decided once
	// per trace at the root span (see SampleRatio).
	SampleRatio float64
}

// Attacher attaches the probes to a target; cmd/routerscope provides the
// capture engine's implementation, tests a synthetic one.
type Attacher func(ctx context.Context, req AttachRequest) (EventSource, error)

// Option tunes Run.
type Option func(*runOptions)

type runOptions struct {
	stdout        io.Writer
	sweepInterval time.Duration
	errorInterval time.Duration
	alive         func(pid uint32) bool
	now           func() time.Time
	procRoot      string
}

// WithStdout sets where the stdout exporter writes (default os.Stdout).
func WithStdout(w io.Writer) Option { return func(o *runOptions) { o.stdout = w } }

// ErrNoTarget is returned when neither the config nor the flags name a
// process to trace.
var ErrNoTarget = errors.New("no target: pass --pid N or --binary PATH, or set routerscope.targets")

// ErrNoProbes is returned when no probe file is configured.
var ErrNoProbes = errors.New("no probe files: pass --probes FILE or set routerscope.probes")

// Run traces the configured targets until ctx ends (SIGINT/SIGTERM) or every
// source has ended, then stops reading, ends the spans still open, flushes
// within the shutdown timeout and detaches.
func Run(ctx context.Context, cfg Config, attach Attacher, log *zap.Logger, opts ...Option) error {
	o := runOptions{
		stdout:        os.Stdout,
		sweepInterval: time.Second,
		errorInterval: 10 * time.Second,
		alive:         processAlive,
		now:           time.Now,
		procRoot:      "/proc",
	}
	for _, opt := range opts {
		opt(&o)
	}
	ratio, attachAny, why := SampleRatio(cfg.Tracing)
	if !attachAny {
		log.Info("attaching nothing", zap.String(LogKeyReason, why))
		return nil
	}
	if len(cfg.Agent.Targets) == 0 {
		return ErrNoTarget
	}
	if len(cfg.Agent.Probes) == 0 {
		return ErrNoProbes
	}
	targets, err := expandTargets(o.procRoot, cfg.Agent.Targets)
	if err != nil {
		return err
	}

	exp, err := NewExporter(ctx, cfg.Tracing.Exporter, o.stdout)
	if err != nil {
		return err
	}
	endpoint := cfg.Tracing.Exporter.Endpoint
	throttle := newErrorThrottle(o.errorInterval, func(err error, failed, suppressed int) {
		log.Error("export spans: the collector rejected or could not be reached; spans dropped",
			zap.String(LogKeyEndpoint, endpoint), zap.Error(err),
			zap.Int(LogKeyFailed, failed), zap.Int(LogKeySuppressed, suppressed))
	})
	pipe, err := NewPipeline(cfg, exp, throttle.observe)
	if err != nil {
		_ = exp.Shutdown(context.Background())
		return err
	}
	asm := NewAssembler(pipe.Emit, cfg.Agent.MaxSpanAge)

	sources, err := attachAll(ctx, cfg, targets, ratio, attach, log)
	if err != nil {
		shutdown(ctx, pipe, cfg, log)
		return err
	}
	readCtx, stopReading := context.WithCancel(ctx)
	allDone := readAll(readCtx, sources, targets, asm, log)

	ticker := time.NewTicker(o.sweepInterval)
	defer ticker.Stop()
	var lastLost uint64
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-allDone:
			break loop
		case <-ticker.C:
			sweep(asm, o, log)
			if lost := totalLost(sources); lost > lastLost {
				log.Warn("kernel ring buffer dropped events", zap.Uint64(LogKeyLost, lost-lastLost))
				lastLost = lost
			}
		}
	}
	stopReading()
	<-allDone
	// Spans whose process is gone end as such; the rest end as stopped.
	sweep(asm, o, log)
	if n := asm.EndAll(o.now()); n > 0 {
		log.Info("ended open spans as failed", zap.Int(LogKeyCount, n), zap.String(LogKeyReason, ReasonAgentStopped))
	}
	shutdown(ctx, pipe, cfg, log)
	closeSources(sources, log)
	st, ex := asm.Stats(), pipe.Stats()
	log.Info("stopped",
		zap.Uint64(LogKeyFinished, st.Finished), zap.Uint64(LogKeyLostEntry, st.LostEntry),
		zap.Uint64(LogKeyExpired, st.Expired), zap.Uint64(LogKeyExited, st.ProcessExited),
		zap.Uint64(LogKeyAbandoned, st.Abandoned), zap.Uint64(LogKeyLost, totalLost(sources)),
		zap.Uint64(LogKeyExported, ex.Exported), zap.Uint64(LogKeyExportFail, ex.Failed),
		zap.Uint64(LogKeyDropped, ex.Dropped))
	return nil
}

// attachAll attaches every target, undoing the earlier attachments when
// one fails.
func attachAll(ctx context.Context, cfg Config, targets []Target, ratio float64, attach Attacher, log *zap.Logger) ([]EventSource, error) {
	var sources []EventSource
	for _, t := range targets {
		src, err := attach(ctx, AttachRequest{Target: t, Probes: cfg.Agent.Probes, SampleRatio: ratio})
		if err != nil {
			closeSources(sources, log)
			return nil, fmt.Errorf("attach to %s: %w", t, err)
		}
		sources = append(sources, src)
		log.Info("attached", zap.Stringer(LogKeyTarget, t), zap.Strings(LogKeyProbes, cfg.Agent.Probes),
			zap.String(LogKeyExporter, cfg.Tracing.Exporter.Type), zap.String(LogKeySampling, cfg.Tracing.Sampling.Type),
			zap.Float64(LogKeyRatio, ratio))
	}
	return sources, nil
}

// readAll starts one reader per source, feeding the assembler until ctx
// ends or the source does; the returned channel closes when all have
// stopped.
func readAll(ctx context.Context, sources []EventSource, targets []Target, asm *Assembler, log *zap.Logger) <-chan struct{} {
	var readers sync.WaitGroup
	for i, src := range sources {
		readers.Go(func() {
			for {
				ev, err := src.Read(ctx)
				if err != nil {
					if ctx.Err() == nil {
						log.Info("event source ended", zap.Stringer(LogKeyTarget, targets[i]), zap.Error(err))
					}
					return
				}
				asm.Handle(ev)
			}
		})
	}
	done := make(chan struct{})
	go func() {
		readers.Wait()
		close(done)
	}()
	return done
}

func closeSources(sources []EventSource, log *zap.Logger) {
	for _, s := range sources {
		if err := s.Close(); err != nil {
			log.Warn("detach", zap.Error(err))
		}
	}
}

// sweep ends the spans of exited processes and the spans whose return was
// lost.
func sweep(asm *Assembler, o runOptions, log *zap.Logger) {
	now := o.now()
	for _, pid := range asm.OpenPIDs() {
		if !o.alive(pid) {
			n := asm.EndProcess(pid, now)
			log.Info("process exited: ended its open spans as failed", zap.Uint32(LogKeyPID, pid), zap.Int(LogKeyCount, n))
		}
	}
	if n := asm.Expire(now); n > 0 {
		log.Warn("return events lost: ended expired spans as failed", zap.Int(LogKeyCount, n))
	}
}

func shutdown(ctx context.Context, pipe *Pipeline, cfg Config, log *zap.Logger) {
	sctx, cancel := exportContext(ctx, cfg.Agent.Export.ShutdownTimeout)
	defer cancel()
	if err := pipe.Shutdown(sctx); err != nil {
		log.Error("flush spans at shutdown", zap.Error(err), zap.Duration(LogKeyTimeout, cfg.Agent.Export.ShutdownTimeout))
	}
}

func totalLost(sources []EventSource) uint64 {
	var n uint64
	for _, s := range sources {
		n += s.Lost()
	}
	return n
}

// processAlive tells whether a process exists: signal 0 checks without
// sending anything; EPERM means it exists under another user.
func processAlive(pid uint32) bool {
	err := syscall.Kill(int(pid), 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// String names a target for logs and errors.
func (t Target) String() string {
	switch {
	case t.PID != 0 && t.Binary != "":
		return fmt.Sprintf("pid %d (%s)", t.PID, t.Binary)
	case t.PID != 0:
		return fmt.Sprintf("pid %d", t.PID)
	}
	return "binary " + t.Binary
}

// withSweepInterval sets how often open spans are checked for expiry and
// exited processes (tests shorten it).
func withSweepInterval(d time.Duration) Option { return func(o *runOptions) { o.sweepInterval = d } }

// withAlive replaces the process liveness check (tests fake exits).
func withAlive(f func(pid uint32) bool) Option { return func(o *runOptions) { o.alive = f } }
