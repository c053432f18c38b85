package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
	"go.uber.org/zap"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/agent/discovery"
	"github.com/routerscope/routerscope/agent/export"
	"github.com/routerscope/routerscope/agent/spans"
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
	LogKeyLinks      = "uprobe_links"
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
	// processes first. Binary is the target's binary path, or Executable
	// when the process was read, so the attacher can skip the lookup.
	// PIDs are as the agent sees them (the host's PID namespace with
	// hostPID), the same the kernel reports in events.
	Target config.Target
	// Probes are the probe spec files to resolve against the target.
	Probes []string
	// SampleRatio is the fraction of traces the kernel keeps, decided once
	// per trace at the root span (see SampleRatio).
	SampleRatio float64
	// Propagation says which halves of W3C trace context to attach.
	Propagation config.Propagation
	// Executable is the target's executable as the agent can open it:
	// /proc/PID/root plus the process's own path, which reaches into
	// containers (or /proc/PID/exe when the file was deleted or replaced).
	// Empty when the process could not be read.
	Executable string
	// BuildID identifies the executable (see BuildID); empty when it could
	// not be read. cmd/routerscope caches resolutions by it.
	BuildID string
	// ProbeDigest is a digest of the probe files' paths and contents, as
	// read when the config was (re)loaded: with BuildID it keys the
	// resolution cache.
	ProbeDigest string
	// Rule names the discovery rule (or target) that selected the process.
	Rule string
}

// Attacher attaches the probes to a target; cmd/routerscope provides the
// capture engine's implementation, tests a synthetic one.
type Attacher func(ctx context.Context, req AttachRequest) (EventSource, error)

// ErrBinaryChanged is what an Attacher returns (cmd/routerscope's
// resolution cache does) when the resolved program's build id is not the
// one the process runs: the file was replaced between the two reads, and
// offsets from it could be wrong for the process.
var ErrBinaryChanged = errors.New("the executable changed while it was being resolved; retrying later")

// Option tunes Run.
type Option func(*runOptions)

type runOptions struct {
	stdout        io.Writer
	sweepInterval time.Duration
	errorInterval time.Duration
	alive         func(pid uint32) bool
	now           func() time.Time
	procRoot      string
	self          int
	getenv        func(string) string
	listener      net.Listener
	reload        func() (config.Config, error)
	hup           <-chan os.Signal
	probeCheck    func(path string) error
	resolveCheck  func(req AttachRequest) error
	kernelStats   KernelStats
	sweepHook     func(running bool)
	// watchSafetyPoll is how often watched files are stat'ed although
	// inotify watches them (dirwatch.go).
	watchSafetyPoll time.Duration
	scanned         func() // after each discovery tick (tests count scans)
	openExecs       func(minGap time.Duration) (ExecSource, error)
}

// WithStdout sets where the stdout exporter writes (default os.Stdout).
func WithStdout(w io.Writer) Option { return func(o *runOptions) { o.stdout = w } }

// WithMetricsListener serves /metrics, /healthz and /readyz on ln while Run
// runs; Run closes it.
func WithMetricsListener(ln net.Listener) Option { return func(o *runOptions) { o.listener = ln } }

// WithReload sets how a changed config is loaded (the command line re-reads
// the file and re-applies its flags); without it, Run re-reads the file the
// config came from (Config.Path), and with neither there is no reload.
func WithReload(load func() (config.Config, error)) Option {
	return func(o *runOptions) { o.reload = load }
}

// WithReloadSignal reloads the config whenever ch delivers (SIGHUP).
func WithReloadSignal(ch <-chan os.Signal) Option { return func(o *runOptions) { o.hup = ch } }

// WithProbeCheck validates a probe file when a config is loaded or
// reloaded (the capture engine's spec parser); a failing check refuses a
// reloaded config.
func WithProbeCheck(check func(path string) error) Option {
	return func(o *runOptions) { o.probeCheck = check }
}

// WithResolveCheck resolves a reloaded config's probes against a process
// without attaching (the capture engine's resolver): a reload whose probes
// do not resolve against every attached process it would re-attach is
// refused, and nothing running is detached for it.
func WithResolveCheck(check func(req AttachRequest) error) Option {
	return func(o *runOptions) { o.resolveCheck = check }
}

// WithProcRoot sets the proc file system discovery reads (default /proc).
func WithProcRoot(dir string) Option { return func(o *runOptions) { o.procRoot = dir } }

// ErrNoTarget is returned when neither the config nor the flags name a
// process to trace.
var ErrNoTarget = errors.New("no target: pass --pid N or --binary PATH, or set routerscope.targets or routerscope.discovery.rules")

// ErrNoProbes is returned when no probe file is configured.
var ErrNoProbes = errors.New("no probe files: pass --probes FILE or set routerscope.probes (or probes on every discovery rule)")

// CheckTargets tells whether the config names processes to trace and
// probe files for them (ErrNoTarget, ErrNoProbes).
func CheckTargets(cfg config.Config) error {
	a := cfg.Agent
	if len(a.Targets) == 0 && len(a.Discovery.Rules) == 0 {
		return ErrNoTarget
	}
	if len(a.Probes) > 0 {
		return nil
	}
	if len(a.Targets) > 0 {
		return ErrNoProbes
	}
	for _, r := range a.Discovery.Rules {
		if len(r.Probes) == 0 {
			return fmt.Errorf("%w: rule %q has none", ErrNoProbes, r.Name)
		}
	}
	return nil
}

// Run traces the configured processes until ctx ends (SIGINT/SIGTERM).
// With discovery rules it scans /proc, attaching matching processes as
// they appear and detaching them as they exit; with only targets it
// attaches them at start (every one must attach) and returns once every
// capture has ended. On SIGHUP (WithReloadSignal) or a changed config or
// probe file, the config is reloaded: attachments change, the assembler
// and exporter keep running. At the end it stops reading, ends the spans
// still open, flushes within the shutdown timeout and detaches.
func Run(ctx context.Context, cfg config.Config, attach Attacher, log *zap.Logger, opts ...Option) error {
	o := runOptions{
		stdout:          os.Stdout,
		sweepInterval:   time.Second,
		errorInterval:   10 * time.Second,
		alive:           processAlive,
		now:             time.Now,
		procRoot:        "/proc",
		self:            os.Getpid(),
		getenv:          os.Getenv,
		watchSafetyPoll: watchSafetyPoll,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.listener != nil {
		defer o.listener.Close()
	}
	if o.reload == nil && cfg.Path != "" {
		path := cfg.Path
		o.reload = func() (config.Config, error) { return config.LoadFile(path) }
	}
	ratio, attachAny, why := config.SampleRatio(cfg.Tracing)
	if !attachAny {
		log.Info("attaching nothing", zap.String(LogKeyReason, why))
		if !discovering(cfg) {
			return nil
		}
		// A daemon stays up, idle, so a reload can turn tracing on (and
		// a DaemonSet pod does not restart in a loop).
	}
	if err := CheckTargets(cfg); err != nil {
		return err
	}
	var digests map[string]string
	if discovering(cfg) {
		// Probe files of targets are the attacher's to read (a CLI run
		// reports its own error); a daemon checks them up front so a
		// reload can be compared with them.
		var err error
		if digests, err = probeDigests(cfg, o.probeCheck); err != nil {
			return err
		}
	} else {
		digests, _ = probeDigests(cfg, nil)
	}

	endpoint := cfg.Tracing.Exporter.Endpoint
	throttle := newErrorThrottle(o.errorInterval, func(err error, failed, suppressed int) {
		log.Error("export spans: the collector rejected or could not be reached; spans dropped",
			zap.String(LogKeyEndpoint, endpoint), zap.Error(err),
			zap.Int(LogKeyFailed, failed), zap.Int(LogKeySuppressed, suppressed))
	})
	var met *metrics
	pipe, err := export.NewSpanPipeline(ctx, cfg, o.stdout, func(err error, n int) {
		met.exportErrors.WithLabelValues(exportErrorReason(err)).Inc()
		throttle.observe(err, n)
	})
	if err != nil {
		return err
	}
	asm := spans.NewAssembler(pipe.Emit, cfg.Agent.MaxSpanAge)
	met = newMetrics(asm, pipe)
	if o.kernelStats != nil {
		met.reg.MustRegister(newKernelCollector(o.kernelStats))
	}

	// Reading outlives the stop signal by the drain (drain.go): it ends
	// with stopReading, not with ctx.
	readCtx, stopReading := context.WithCancel(context.WithoutCancel(ctx))
	defer stopReading()
	m := &manager{attach: attach, log: log, asm: asm, pipe: pipe, met: met, o: o, host: discovery.HostFromEnv(o.getenv),
		cfg: cfg, ratio: ratio, paused: !attachAny, digests: digests, atts: map[discovery.Key]*attachment{}, procs: discovery.Cache{}, retryAt: map[discovery.Key]time.Time{},
		readCtx: readCtx, ended: make(chan *attachment), exits: make(chan exitNotice), wake: make(chan struct{}, 1)}
	// Watch from before the first attach, so an edit made while attaching
	// is not taken for the baseline.
	reloads := make(chan struct{}, 1)
	stopWatch := m.startWatch(ctx, reloads)
	defer stopWatch()
	if m.paused {
		// Nothing to attach until a reload.
	} else if want, err := m.desired(); err != nil {
		shutdown(ctx, pipe, cfg, log)
		return err
	} else if err := m.reconcile(ctx, want, !discovering(cfg)); err != nil {
		stopReading()
		m.readers.Wait()
		shutdown(ctx, pipe, cfg, log)
		return err
	}
	m.updateReadiness()
	if o.listener != nil {
		stop := met.serveHTTP(o.listener, cfg.Agent.Metrics.Pprof)
		defer stop()
	}
	m.loop(ctx, reloads)

	if ctx.Err() != nil {
		m.drain()
	}
	stopReading()
	m.readers.Wait()
	// The spans still open in the kernel are ended below with the rest.
	for _, a := range m.atts {
		m.takeOpenSpans(a)
	}
	// Spans whose process is gone end as such; the rest end as stopped,
	// each through its process's provider, which the flush then drains.
	sweep(asm, o, log)
	if n := asm.EndAll(o.now()); n > 0 {
		log.Info("ended open spans as failed", zap.Int(LogKeyCount, n), zap.String(LogKeyReason, spans.ReasonAgentStopped))
	}
	shutdown(ctx, pipe, m.cfg, log)
	m.detachAll(reasonStopped)
	st, ex := asm.Stats(), pipe.Stats()
	log.Info("stopped",
		zap.Uint64(LogKeyFinished, st.Finished), zap.Uint64(LogKeyLostEntry, st.LostEntry),
		zap.Uint64(LogKeyExpired, st.Expired), zap.Uint64(LogKeyExited, st.ProcessExited),
		zap.Uint64(LogKeyAbandoned, st.Abandoned), zap.Uint64(LogKeyLost, m.lostTotal),
		zap.Uint64(LogKeyExported, ex.Exported), zap.Uint64(LogKeyExportFail, ex.Failed),
		zap.Uint64(LogKeyDropped, ex.Dropped))
	return m.exitErr
}

// loop runs discovery, sweeps and reloads until ctx ends or, with only
// targets, nothing is attached any more. The sweep runs while there is
// something for it to do and stops when an idle agent has nothing (see
// sweepMayStop).
func (m *manager) loop(ctx context.Context, reloads <-chan struct{}) {
	sweepTick := time.NewTicker(m.o.sweepInterval)
	defer sweepTick.Stop()
	// Without discovery rules nothing is scanned: the ticker stays stopped
	// so an idle agent is not woken for nothing. With exec notifications
	// it runs at the interval only while something can still change what
	// a scan finds (execwake.go).
	scanTick := time.NewTicker(time.Hour)
	scanTick.Stop()
	defer scanTick.Stop()
	var period time.Duration
	rearmScan := func(force bool) {
		p := m.scanPeriod(time.Now())
		if p == period && !force {
			return
		}
		period = p
		if p == 0 {
			scanTick.Stop()
		} else {
			scanTick.Reset(p)
		}
	}
	// After the start or a reload, /proc is walked every interval for a
	// settle window: processes already running may open their port later.
	settle := func() {
		now := time.Now()
		m.sched.walkUntil, m.sched.lastWalk = now.Add(m.settleWindow()), now
	}
	m.startExecWake()
	defer m.stopExecWake()
	settle()
	rearmScan(true)
	for {
		if !discovering(m.cfg) && len(m.atts) == 0 {
			if m.attachErr != nil {
				// Targets still running that no longer attach (a reload
				// whose attach failed): an error, not a clean end.
				m.exitErr = fmt.Errorf("no target attached any more: %w", m.attachErr)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case a := <-m.ended:
			m.captureEnded(a)
		case x := <-m.exits:
			m.processExited(x.a, x.at)
		case <-scanTick.C:
			m.tick(ctx)
		case <-m.execCh():
			// The processes that executed are checked at once: they may
			// match by their executable or command line already.
			m.execed(ctx)
		case <-sweepTick.C:
			m.reapExited()
			sweep(m.asm, m.o, m.log)
			m.reportTrouble()
			for _, a := range m.atts {
				m.countLost(a)
			}
			if m.sweepMayStop() {
				sweepTick.Stop()
				if m.o.sweepHook != nil {
					m.o.sweepHook(false)
				}
			}
		case <-m.wake:
			sweepTick.Reset(m.o.sweepInterval)
			if m.o.sweepHook != nil {
				m.o.sweepHook(true)
			}
		case <-m.o.hup:
			m.reloadConfig(ctx, "signal")
			m.startExecWake()
			settle()
			rearmScan(true)
		case <-reloads:
			m.reloadConfig(ctx, "file changed")
			m.startExecWake()
			settle()
			rearmScan(true)
		}
		// A settle window that ended, or an attach retry now pending,
		// changes the period.
		rearmScan(false)
		m.updateReadiness()
	}
}

// scan reconciles the attachments with the processes running now.
func (m *manager) scan(ctx context.Context) {
	if m.paused {
		return
	}
	m.met.scans.Inc()
	want, err := m.desired()
	if err != nil {
		m.log.Warn("scan processes", zap.Error(err))
		return
	}
	_ = m.reconcile(ctx, want, false)
}

// sweep ends the spans of exited processes and the spans whose return was
// lost.
func sweep(asm *spans.Assembler, o runOptions, log *zap.Logger) {
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

func shutdown(ctx context.Context, pipe *export.Pipeline, cfg config.Config, log *zap.Logger) {
	sctx, cancel := exportContext(ctx, cfg.Agent.Export.ShutdownTimeout)
	defer cancel()
	if err := pipe.Shutdown(sctx); err != nil {
		log.Error("flush spans at shutdown", zap.Error(err), zap.Duration(LogKeyTimeout, cfg.Agent.Export.ShutdownTimeout))
	}
}

// processAlive tells whether a process exists: signal 0 checks without
// sending anything; EPERM means it exists under another user. A zombie
// (exited, not yet reaped by its parent) counts as gone.
func processAlive(pid uint32) bool {
	err := syscall.Kill(int(pid), 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	p, err := procfs.NewProc(int(pid))
	if err != nil {
		return true // no procfs to ask: trust the signal
	}
	stat, err := p.Stat()
	return err != nil || stat.State != "Z"
}

// withSweepInterval sets how often open spans are checked for expiry and
// exited processes (tests shorten it).
func withSweepInterval(d time.Duration) Option { return func(o *runOptions) { o.sweepInterval = d } }

// withSweepHook is told when the sweep stops (idle) and starts again.
func withSweepHook(f func(running bool)) Option { return func(o *runOptions) { o.sweepHook = f } }

// withScanned calls f after each discovery tick, so a test can wait for
// scans instead of sleeping through them.
func withScanned(f func()) Option { return func(o *runOptions) { o.scanned = f } }

// withAlive replaces the process liveness check (tests fake exits).
func withAlive(f func(pid uint32) bool) Option { return func(o *runOptions) { o.alive = f } }
