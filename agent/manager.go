package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"go.uber.org/zap"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/agent/discovery"
	"github.com/routerscope/routerscope/agent/export"
	"github.com/routerscope/routerscope/agent/spans"
	"github.com/routerscope/routerscope/internal/readlimit"
	"github.com/routerscope/routerscope/probes"
)

// Log field keys of discovery and reload.
const (
	LogKeyRule       = "rule"
	LogKeyExecutable = "executable"
	LogKeyBuildID    = "build_id"
	LogKeyAttached   = "attached"
)

// manager owns the attachments: it attaches the processes the current
// config selects, detaches the ones that exited or are no longer
// selected, and feeds every capture into the one assembler. Only the run
// loop calls its methods (except the readers it starts), so its maps need
// no lock.
type manager struct {
	attach Attacher
	log    *zap.Logger
	asm    *spans.Assembler
	pipe   *export.Pipeline
	met    *metrics
	o      runOptions
	host   discovery.HostInfo

	cfg   config.Config
	ratio float64
	// paused is set when the config attaches nothing (tracing disabled or
	// always_off): no scan attaches until a reload turns it back on.
	paused bool
	// digests maps each probe file to its content digest as read at the
	// last (re)load: attachments compare them to see a probe file change.
	digests map[string]string

	procs   discovery.Cache
	atts    map[discovery.Key]*attachment
	retryAt map[discovery.Key]time.Time
	// matched is how many processes the last reconcile wanted.
	matched int
	// onReload tells the file watcher the files of a reloaded config.
	onReload func(config.Config)
	// attachErr is the last error of a non-strict attach of a process
	// that is still wanted; exitErr is what Run returns.
	attachErr, exitErr error
	// lostTotal counts the kernel's lost events over all captures.
	lostTotal uint64

	readCtx context.Context
	ended   chan *attachment
	// trouble is what reportTrouble last logged.
	trouble troubleCounts
	// handled counts the events read, for the drain at stop.
	handled atomic.Uint64
	// exits delivers the exits of attached processes (exitwatch.go).
	exits chan exitNotice
	// sweepIdle is set while the sweep is stopped (sweep.go); wake
	// restarts it.
	sweepIdle atomic.Bool
	wake      chan struct{}
	// execs wakes discovery when programs are executed (execwake.go);
	// nil while discovery polls. execTried is set once it was opened or
	// found unavailable; sched is the scan schedule.
	execs     *execWake
	execTried bool
	sched     scanSchedule
	// seen is the activity the last sweep saw.
	seen    activity
	readers sync.WaitGroup
	// closing tracks the captures of detached processes still closing in
	// the background (see detach).
	closing sync.WaitGroup
}

// attachment is one attached process.
type attachment struct {
	key    discovery.Key
	want   discovery.Match
	spec   string
	src    EventSource
	cancel context.CancelFunc
	done   chan struct{}
	lost   uint64
	// exitWatched is set while a pidfd watches the process's exit
	// (exitwatch.go): the sweep then need not poll its liveness.
	exitWatched atomic.Bool
}

func (m *manager) spec(w discovery.Match) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ratio=%v", m.ratio)
	for _, p := range w.Probes {
		fmt.Fprintf(&b, "|%s@%s", p, m.digests[p])
	}
	return b.String()
}

// probeDigests reads every probe file the config names (so a missing or
// unreadable one refuses the config) and checks it with check.
func probeDigests(cfg config.Config, check func(string) error) (map[string]string, error) {
	paths := append([]string(nil), cfg.Agent.Probes...)
	for _, r := range cfg.Agent.Discovery.Rules {
		paths = append(paths, r.Probes...)
	}
	out := map[string]string{}
	for _, p := range paths {
		if _, ok := out[p]; ok {
			continue
		}
		if _, err := readlimit.File(p, probes.MaxSpecBytes); err != nil {
			return nil, fmt.Errorf("read probe file: %w", err)
		}
		if check != nil {
			if err := check(p); err != nil {
				return nil, fmt.Errorf("probe file %s: %w", p, err)
			}
		}
		// The digest covers the files it includes and its offsets file.
		h := sha256.New()
		for _, f := range probes.SpecFiles(p) {
			data, err := readlimit.File(f, probes.MaxSpecBytes)
			if err != nil && f == p {
				return nil, fmt.Errorf("read probe file: %w", err)
			}
			h.Write([]byte(f))
			h.Write(data)
		}
		out[p] = hex.EncodeToString(h.Sum(nil)[:8])
	}
	return out, nil
}

// discovering tells whether the config has discovery rules: then /proc is
// scanned, and the agent runs until stopped; with only targets it stops
// when the last target is gone.
func discovering(cfg config.Config) bool { return len(cfg.Agent.Discovery.Rules) > 0 }

// desired returns the processes the config selects now. With discovery
// rules, /proc is scanned (targets become rules too); with only targets,
// they are expanded as at start (binary targets must be running).
func (m *manager) desired() (map[discovery.Key]discovery.Match, error) {
	a := m.cfg.Agent
	if discovering(m.cfg) {
		rules := append(config.TargetRules(a.Targets), a.Discovery.Rules...)
		return discovery.Scan(m.o.procRoot, rules, a.Discovery.Exclude, a.Probes, m.o.self, m.procs)
	}
	targets, err := discovery.ExpandTargets(m.o.procRoot, a.Targets)
	if err != nil {
		return nil, err
	}
	out := map[discovery.Key]discovery.Match{}
	for _, t := range targets {
		p, err := discovery.ReadProcess(m.o.procRoot, t.PID)
		if err != nil {
			// Still attach: the attacher has the final word on a PID the
			// agent cannot read (another user's, or a test's fake).
			p = discovery.NewProcess(m.o.procRoot, t.PID)
		}
		name := t.String()
		if t.Binary != "" {
			name = "binary " + t.Binary
		}
		out[p.Key()] = discovery.Match{Proc: p, Rule: name, Probes: a.Probes, Target: t}
	}
	return out, nil
}

// reconcile attaches the wanted processes that are not attached, detaches
// the attached ones no longer wanted, and re-attaches those whose probes
// or sampling changed. With strict, the first attach error undoes every
// attachment and is returned (start-up with explicit targets); otherwise
// errors are logged, counted and retried after the retry interval.
func (m *manager) reconcile(ctx context.Context, want map[discovery.Key]discovery.Match, strict bool) error {
	m.attachErr = nil
	for key, a := range m.atts {
		w, ok := want[key]
		switch {
		case !ok && !m.keyAlive(key):
			m.detach(a, reasonExited)
		case !ok:
			m.detach(a, reasonUnmatched)
		case m.spec(w) != a.spec:
			m.detach(a, reasonChanged)
		}
	}
	if err := m.attachNew(ctx, want, strict); err != nil {
		return err
	}
	for key := range m.retryAt {
		if _, ok := want[key]; !ok {
			delete(m.retryAt, key)
		}
	}
	m.matched = len(want)
	m.met.attached.Set(float64(len(m.atts)))
	return nil
}

// attachNew attaches the wanted processes not attached yet and not
// waiting for a retry. With strict, the first error undoes every
// attachment and is returned; otherwise errors are logged and counted,
// and the process is retried after the retry interval.
func (m *manager) attachNew(ctx context.Context, want map[discovery.Key]discovery.Match, strict bool) error {
	now := m.o.now()
	keys := make([]discovery.Key, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].PID < keys[j].PID })
	tried := 0
	// Attaching reads the target's DWARF and symbols and loads the
	// kernel programs: tens of MiB that are garbage once it is done. Give
	// them back to the OS now rather than within minutes, so the agent's
	// resident memory is its steady state, not its attach peak; the same
	// for the pages of the agent's own code the attach ran once
	// (selfpages.go).
	defer func() {
		if tried > 0 {
			debug.FreeOSMemory()
			dropExecutablePages()
		}
	}()
	for _, key := range keys {
		if _, ok := m.atts[key]; ok {
			continue
		}
		if t, ok := m.retryAt[key]; ok && now.Before(t) {
			continue
		}
		tried++
		if err := m.attachOne(ctx, want[key]); err != nil {
			if strict {
				m.detachAll(reasonStopped)
				return err
			}
			m.attachErr = err
			m.retryAt[key] = now.Add(m.cfg.Agent.Discovery.RetryInterval)
			m.log.Warn("attach failed; retrying later", zap.Int(LogKeyPID, key.PID), zap.String(LogKeyRule, want[key].Rule),
				ErrorField(err), zap.Duration(LogKeyTimeout, m.cfg.Agent.Discovery.RetryInterval))
			continue
		}
		delete(m.retryAt, key)
	}
	return nil
}

// attachOne attaches one process: its own export resource, its build id,
// then the capture, and a reader feeding the assembler.
func (m *manager) attachOne(ctx context.Context, w discovery.Match) error {
	p := w.Proc
	pid := uint32(p.PID)
	if err := m.pipe.AddProcess(pid, discovery.ProcessResource(m.o.procRoot, p, m.host)); err != nil {
		m.met.attachErrors.WithLabelValues(reasonLimit).Inc()
		return fmt.Errorf("attach to pid %d: %w", p.PID, err)
	}
	req := AttachRequest{Target: config.Target{PID: p.PID, Binary: w.Target.Binary}, Probes: w.Probes, SampleRatio: m.ratio, Propagation: m.cfg.Agent.Propagation,
		ProbeDigest: m.probeDigest(w.Probes), Rule: w.Rule}
	if p.Exe != "" {
		req.Executable = p.HostExecutable()
		if req.Target.Binary == "" {
			req.Target.Binary = req.Executable
		}
		id, err := discovery.BuildID(req.Executable)
		if err != nil {
			m.log.Debug("no build id: resolutions of this process are not shared", zap.Int(LogKeyPID, p.PID), zap.Error(err))
		}
		req.BuildID = id
	}
	src, err := m.attach(ctx, req)
	if err != nil {
		m.pipe.RemoveProcess(pid)
		m.met.attachErrors.WithLabelValues(attachErrorReason(err)).Inc()
		return fmt.Errorf("attach to %s: %w", req.Target, err)
	}
	rctx, cancel := context.WithCancel(m.readCtx)
	a := &attachment{key: p.Key(), want: w, spec: m.spec(w), src: src, cancel: cancel, done: make(chan struct{})}
	m.atts[a.key] = a
	m.met.attaches.WithLabelValues(w.Rule).Inc()
	m.log.Info("attached", zap.Stringer(LogKeyTarget, req.Target), zap.String(LogKeyRule, w.Rule),
		zap.String(LogKeyExecutable, p.Exe), zap.String(LogKeyBuildID, req.BuildID), zap.Strings(LogKeyProbes, w.Probes),
		zap.String(LogKeyExporter, m.cfg.Tracing.Exporter.Type), zap.String(LogKeySampling, m.cfg.Tracing.Sampling.Type),
		zap.Float64(LogKeyRatio, m.ratio), zap.String(LogKeyLinks, linkMode(src)))
	logPropagation(m.log, req.Target, src)
	logHandOff(m.log, req.Target, src)
	m.readers.Go(func() { m.read(rctx, a) })
	m.readers.Go(func() { m.watchExit(rctx, a) })
	return nil
}

// linkMode names how the capture attached its uprobes, when it says.
func linkMode(src EventSource) string {
	if lm, ok := src.(interface{ LinkMode() probes.LinkMode }); ok {
		return lm.LinkMode().String()
	}
	return "unknown"
}

func (m *manager) probeDigest(paths []string) string {
	var b strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&b, "%s@%s;", p, m.digests[p])
	}
	return b.String()
}

// Attach error reasons beyond the detach ones, one per condition an
// operator fixes differently: the probe file (invalid_spec,
// symbol_not_found, inlined, not_supported, kernel_limit), the router's
// build (no_dwarf), the node (kernel_not_supported, permission_denied).
const (
	reasonInvalidSpec   = "invalid_spec"
	reasonSymbol        = "symbol_not_found"
	reasonInlined       = "inlined"
	reasonNoDWARF       = "no_dwarf"
	reasonNotSupported  = "not_supported"
	reasonKernelLimit   = "kernel_limit"
	reasonKernelMissing = "kernel_not_supported"
	reasonPermission    = "permission_denied"
	reasonNotFound      = "not_found"
)

// attachErrorReasons maps the sentinel errors of an attach to reason
// labels, most specific first: probes.Resolve joins one error per bad
// probe, so a joined error takes the first reason any part matches, and
// the capture engine's own sentinels go before the operating system's
// (a symbol not found is not a missing file).
var attachErrorReasons = []struct {
	err    error
	reason string
}{
	{ErrBinaryChanged, reasonChangedBin},
	{export.ErrTooManyProcesses, reasonLimit},
	{context.Canceled, reasonCanceled},
	{probes.ErrInvalidSpec, reasonInvalidSpec},
	{probes.ErrInvalidOptions, reasonInvalidSpec},
	{probes.ErrNoDWARF, reasonNoDWARF},
	{probes.ErrSymbolNotFound, reasonSymbol},
	{probes.ErrInlined, reasonInlined},
	{probes.ErrKernelLimit, reasonKernelLimit},
	{probes.ErrNotSupported, reasonNotSupported},
	// A kernel feature the programs need is missing (cilium/ebpf's feature
	// probes): the node's kernel, not the probe file, is the problem.
	{ebpf.ErrNotSupported, reasonKernelMissing},
	// EPERM and EACCES: missing capabilities, or RLIMIT_MEMLOCK on kernels
	// before 5.11, which cilium/ebpf reports as EPERM.
	{os.ErrPermission, reasonPermission},
	// The process exited, or its executable is gone, during the attach.
	{discovery.ErrNoProcess, reasonNotFound},
	{os.ErrNotExist, reasonNotFound},
}

// attachErrorReason names an attach error for the reason label: a small,
// fixed set of values, never the error text.
func attachErrorReason(err error) string {
	for _, r := range attachErrorReasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return reasonAttach
}

// read feeds one capture into the assembler until it ends, then reports
// the end to the run loop.
func (m *manager) read(ctx context.Context, a *attachment) {
	defer func() {
		close(a.done)
		select {
		case m.ended <- a:
		case <-m.readCtx.Done():
		}
	}()
	for {
		ev, err := a.src.Read(ctx)
		if err != nil {
			if ctx.Err() == nil {
				m.log.Info("event source ended", zap.Int(LogKeyPID, a.key.PID), zap.Error(err))
			}
			return
		}
		if ev.Probe != nil {
			m.met.events.WithLabelValues(ev.Probe.Spec.Span, eventKindName(ev.Kind)).Inc()
		}
		m.asm.Handle(ev)
		m.handled.Add(1)
		if m.sweepIdle.Load() {
			m.wakeSweep()
		}
	}
}

func eventKindName(k probes.EventKind) string {
	switch k {
	case probes.EventEntry:
		return "entry"
	case probes.EventReturn:
		return "return"
	case probes.EventAbandoned:
		return "abandoned"
	case probes.EventSpan:
		return "span"
	}
	return "unknown"
}

// ended handles a capture that ended by itself (the process exited, or
// the capture failed).
func (m *manager) captureEnded(a *attachment) {
	if m.atts[a.key] != a {
		return // already detached by the loop
	}
	reason := reasonSourceEnded
	if !m.keyAlive(a.key) {
		reason = reasonExited
	} else {
		// A live process whose capture ended is retried, not hammered.
		m.retryAt[a.key] = m.o.now().Add(m.cfg.Agent.Discovery.RetryInterval)
	}
	m.detach(a, reason)
	m.met.attached.Set(float64(len(m.atts)))
}

// keyAlive tells whether the very process of key still runs: with a known
// start time, a reused PID is not taken for it.
func (m *manager) keyAlive(key discovery.Key) bool {
	if !m.o.alive(uint32(key.PID)) {
		return false
	}
	if key.Start == 0 {
		return true
	}
	start, err := discovery.ReadStartTime(m.o.procRoot, key.PID)
	return err == nil && start == key.Start
}

// detach stops reading one attachment, ends the spans its process left
// open, and closes the capture and flushes its export resource in the
// background.
//
// Closing a capture unregisters its uprobes, and the kernel waits for an
// RCU grace period per uprobe: 5 to 12 s for the router's 46 uprobes on
// the 2-core test machine (kernel 6.18). Waited for here, the run loop
// would stop scanning that long, and a router restarted at once would go
// untraced for as long; so only the reader is stopped here (Read returns
// when its context ends), which also lets the last lost-event count be
// read before the maps are gone.
func (m *manager) detach(a *attachment, reason string) {
	delete(m.atts, a.key)
	a.cancel()
	<-a.done
	m.countLost(a)
	// Before the capture closes: its kernel maps hold the open spans.
	m.takeOpenSpans(a)
	src, pid0 := a.src, a.key.PID
	m.closing.Go(func() {
		if err := src.Close(); err != nil {
			m.log.Warn("detach", zap.Int(LogKeyPID, pid0), zap.Error(err))
		}
	})
	pid := uint32(a.key.PID)
	now := m.o.now()
	var n int
	switch reason {
	case reasonStopped:
		// Run ends the remaining spans itself, as stopped.
	case reasonExited:
		n = m.asm.EndProcess(pid, now)
	default:
		n = m.asm.EndDetached(pid, now)
	}
	if reason != reasonStopped {
		// At stop the pipeline's own shutdown flushes every provider.
		m.pipe.RemoveProcess(pid)
	}
	m.met.detaches.WithLabelValues(reason).Inc()
	m.log.Info("detached", zap.Int(LogKeyPID, a.key.PID), zap.String(LogKeyRule, a.want.Rule),
		zap.String(LogKeyReason, reason), zap.Int(LogKeyCount, n))
}

// detachAll detaches every process. When the agent stops it also waits
// for every capture to be closed, so no uprobe outlives the agent and no
// goroutine outlives Run; a reload that pauses tracing does not wait.
func (m *manager) detachAll(reason string) {
	for _, a := range m.atts {
		m.detach(a, reason)
	}
	m.met.attached.Set(0)
	if reason == reasonStopped {
		m.closing.Wait()
	}
}

// countLost adds the capture's newly lost events to the metric and log.
func (m *manager) countLost(a *attachment) {
	lost := a.src.Lost()
	if lost <= a.lost {
		return
	}
	d := lost - a.lost
	a.lost = lost
	m.lostTotal += d
	m.met.lostEvents.Add(float64(d))
	m.log.Warn("kernel ring buffer dropped events", zap.Int(LogKeyPID, a.key.PID), zap.Uint64(LogKeyLost, d))
}

// updateReadiness: ready when export works and either something is
// attached or nothing matches yet.
func (m *manager) updateReadiness() {
	ready := m.pipe.ExportHealthy() && (len(m.atts) > 0 || m.matched == 0)
	m.met.ready.Store(ready)
	if !ready {
		why := m.notReadyReason()
		m.met.notReady.Store(&why)
	}
}
