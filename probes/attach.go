package probes

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/routerscope/routerscope/bpf"
)

// Placement says where a probe's entry uprobe goes.
type Placement int

const (
	// PlacementPrologue (the default) puts the entry uprobe at
	// Resolved.EntryOffset, after the stack-growth check, so a function
	// whose stack grows opens one span, not two.
	PlacementPrologue Placement = iota
	// PlacementSymbol puts it at the function's first instruction
	// (Resolved.SymbolOffset), which fires again after morestack. For
	// benchmarks and tests that show why the prologue placement exists.
	PlacementSymbol
)

// cookieEntryIsReturn is COOKIE_ENTRY_IS_RETURN of bpf/capture.c: the entry
// instruction is a RET (an empty function), so the entry program also closes
// the span; two uprobes at one address would run in no defined order.
const cookieEntryIsReturn = 1 << 32

// cookieEndAt is COOKIE_END_AT of bpf/capture.c: the entry program fires at
// the probe's end_at function and ends the spans whose frames are gone.
const cookieEndAt = 1 << 33

// Record batching: the kernel wakes the reader once wakeupBytes(ring) bytes
// are waiting, and Read polls every pollInterval for what a quiet period
// leaves below that. Waking per record costs more than writing it. A poll
// that finds nothing puts the reader to sleep without a deadline: it tells
// the kernel (config.reader_idle), whose next record wakes it, so an idle
// agent makes no system calls at all.
const pollInterval = 50 * time.Millisecond

func wakeupBytes(ring int) uint64 { return uint64(min(ring/8, 64<<10)) }

// DefaultRingBufferBytes is the ring buffer size when Options.RingBufferBytes is 0.
const DefaultRingBufferBytes = 4 << 20

// Options tune Attach. The zero Options samples every trace, uses a 4 MiB
// ring buffer and the prologue placement, and does not track go statements;
// DefaultOptions turns goroutine hand-off on.
type Options struct {
	// SampleRatio is the fraction of traces kept, decided in the kernel at
	// root spans with OpenTelemetry's TraceIDRatioBased rule; nil keeps
	// every trace (always_on), a ratio of 0 keeps none. Use Ratio to set it.
	SampleRatio *float64
	// RingBufferBytes is the size of the event ring buffer: a power of two
	// and a multiple of the page size; 0 means DefaultRingBufferBytes.
	RingBufferBytes int
	// Placement of the entry uprobes; the zero value is PlacementPrologue.
	Placement Placement
	// HandOff tracks go statements (uprobes on runtime.newproc1) so a
	// goroutine started inside a span nests its spans under it while that
	// span is open. False in the zero Options, true in DefaultOptions.
	HandOff bool
	// PerfEventLinks attaches one perf-event uprobe per offset even where
	// the kernel has uprobe_multi links (which Attach prefers: see
	// LinkMode). For comparisons and for kernels where multi links are
	// refused.
	PerfEventLinks bool
	// Propagation turns W3C trace context extraction and injection on
	// (propagation.go). Off in the zero Options, on in DefaultOptions.
	Propagation Propagation
}

// DefaultOptions returns the options the agent should start from: always
// sample, 4 MiB ring buffer, prologue placement, goroutine hand-off and W3C
// trace context propagation on.
func DefaultOptions() Options {
	return Options{RingBufferBytes: DefaultRingBufferBytes, HandOff: true,
		Propagation: Propagation{Extract: true, Inject: true}}
}

// Ratio returns a pointer to r, for Options.SampleRatio.
func Ratio(r float64) *float64 { return &r }

// ErrClosed is returned by Read once the Tracer is closed.
var ErrClosed = errors.New("tracer closed")

// ErrInvalidOptions is returned by Attach for options it cannot use.
var ErrInvalidOptions = errors.New("invalid tracer options")

// ErrKernelLimit is returned by Attach when a resolved probe needs more than
// the kernel programs can do (too many values or pointer hops, too many
// probes).
var ErrKernelLimit = errors.New("probe exceeds the kernel program's limits")

// ProbeStats are the counters of one probe.
type ProbeStats struct {
	Symbol string
	Span   string
	// Uprobes is the number of uprobes attached: one entry plus one per RET
	// (none for end: next), plus one on the end_at function.
	Uprobes int
	// Entries and Returns count spans opened and closed at a RET, sampled or
	// not; Abandoned counts spans closed because their frame was gone. Of an
	// unsampled trace only the roots (one per goroutine) are opened.
	Entries, Returns, Abandoned uint64
	// Skipped counts calls inside an unsampled trace, which the kernel
	// passes over after one lookup without opening a span.
	Skipped uint64
	// Emitted counts records (one per finished sampled span) written to the
	// ring buffer.
	Emitted uint64
	// Overflow counts entries not tracked because the goroutine already had
	// MaxDepth open spans.
	Overflow uint64
	// Unmatched counts RETs without a matching open span (functions entered
	// before Attach).
	Unmatched uint64
	// EndAt is the probe's end_at function; EndAtUprobes is how many of
	// Uprobes are on it (0 or 1), and EndAtHits counts their hits.
	EndAt        string
	EndAtUprobes int
	EndAtHits    uint64
}

// Stats are a Tracer's counters, read from kernel maps when asked.
type Stats struct {
	Probes []ProbeStats
	// Lost is the number of events dropped because the ring buffer was full.
	Lost uint64
	// Read is the number of events decoded by Read.
	Read uint64
	// HandOffUprobes is the number of uprobes on runtime.newproc1 (0 when
	// hand-off is off).
	HandOffUprobes int
	// HandOffOff says why hand-off is off although Options.HandOff asked
	// for it (the target's Go release or layout is not the verified one).
	HandOffOff string
}

// Tracer is a Program attached to a process, through a Capture shared with
// the agent's other Tracers (or one of its own: Attach). Read is meant for
// one reader goroutine; Stats, Lost and Close may be called from any
// goroutine.
type Tracer struct {
	c *Capture
	// seq orders the Capture's Tracers by attach: a process re-attached
	// before its old Tracer closed gets its records on the newer one.
	seq uint64
	// own is set when the Tracer made its Capture (Attach) and closes it.
	own     bool
	prog    *Program
	pid     int
	bin     *Binary // for runtime.newproc1 and the names of error types; the Capture's, shared by prog's Tracers
	byID    []*Resolved
	base    int // the first descriptor id of prog in the Capture
	linker  linker
	links   []link.Link
	uprobes []int // per probe id
	// endAtUprobes counts, per probe id, the uprobes on its end_at function.
	endAtUprobes []int
	handOff      int
	// handOffOff says why hand-off was asked for and is off.
	handOffOff string
	// W3C trace context (propagation.go, inject.go).
	prop        PropagationStatus
	propUprobes int
	injecting   bool
	dec         decoder

	// queue carries the events the Capture's reader decoded for this
	// process; closing is closed when Close starts.
	queue   chan readResult
	closing chan struct{}
	read    atomic.Uint64

	// attached is set once setup is done: Capture.Stats reads uprobes
	// from another goroutine only then.
	attached  atomic.Bool
	linksOnce sync.Once
	linksErr  error
	closeOnce sync.Once
	closeErr  error
}

// readResult is one decoded record, or why it could not be decoded.
type readResult struct {
	ev  Event
	err error
}

// tracerQueue bounds the decoded events waiting for a Tracer's Read: the
// ring buffer is the real buffer; this only lets the reader run ahead of
// one slow consumer for a while.
const tracerQueue = 256

// Attach loads the kernel programs for this Tracer alone and attaches the
// uprobes of prog to the process pid (pid 0: every process running
// prog.Binary). An agent tracing many processes shares one Capture
// instead (Capture.Attach). A failed Attach detaches and frees what it had
// set up; so does a ctx done before or while it attaches, and the error
// then wraps ctx.Err().
func Attach(ctx context.Context, prog *Program, pid int, opts Options) (*Tracer, error) {
	if err := checkTarget(prog, pid); err != nil {
		return nil, err
	}
	if _, _, err := checkOptions(opts); err != nil {
		return nil, err
	}
	if err := attachCanceled(ctx, pid); err != nil {
		return nil, err
	}
	c, err := NewCapture(CaptureOptions{RingBufferBytes: opts.RingBufferBytes, PerfEventLinks: opts.PerfEventLinks})
	if err != nil {
		return nil, fmt.Errorf("attach: %w", err)
	}
	t, err := c.Attach(ctx, prog, pid, opts)
	if err != nil {
		c.Close()
		return nil, err
	}
	t.own = true
	return t, nil
}

func checkTarget(prog *Program, pid int) error {
	if prog == nil {
		return fmt.Errorf("attach: nil program: %w", ErrInvalidOptions)
	}
	if pid < 0 {
		return fmt.Errorf("attach to pid %d: want a process id, or 0 for every process: %w", pid, ErrInvalidOptions)
	}
	return nil
}

// attachCanceled returns an error wrapping ctx.Err() once ctx is done: an
// attach checks it between steps and between links, so a caller that
// gives up (the agent stopping) does not wait for the rest.
func attachCanceled(ctx context.Context, pid int) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("attach pid %d: %w", pid, err)
	}
	return nil
}

// Attach writes prog's descriptors into the Capture (once per Program,
// shared by its processes) and attaches its uprobes, filtered to pid
// (0: every process running prog.Binary). The ring buffer size and link
// mode are the Capture's (opts.RingBufferBytes is not used; asking for
// perf-event links on a Capture of uprobe_multi links is an error); the
// sampling ratio applies to the whole Capture. A pid may be attached again
// before its old Tracer is closed (the agent re-attaches a process whose
// config changed while the old uprobes are still being removed): records
// go to the newest Tracer that knows their probe. A failed Attach detaches
// and frees what it had set up. A ctx done before or while it attaches
// stops it: what it attached is detached and freed, and the error wraps
// ctx.Err().
func (c *Capture) Attach(ctx context.Context, prog *Program, pid int, opts Options) (*Tracer, error) {
	if err := checkTarget(prog, pid); err != nil {
		return nil, err
	}
	if err := attachCanceled(ctx, pid); err != nil {
		return nil, err
	}
	_, bound, err := checkOptions(opts)
	if err != nil {
		return nil, err
	}
	if opts.PerfEventLinks && c.mode != LinkPerfEvent {
		return nil, fmt.Errorf("attach: perf-event links asked on a capture of %s links: %w", c.mode, ErrInvalidOptions)
	}
	byID, err := indexProbes(prog)
	if err != nil {
		return nil, err
	}
	descs := make([][]byte, len(byID))
	for id, p := range byID {
		if p == nil {
			continue
		}
		if descs[id], err = encodeDescriptor(p); err != nil {
			return nil, err
		}
	}
	base, bin, err := c.acquireIDs(prog, descs)
	if err != nil {
		return nil, fmt.Errorf("attach: %w", err)
	}
	// Every span reads the goroutine's g: a release the engine is not
	// verified on is refused rather than traced with garbage depths.
	if err := PartCapture.Check(bin); err != nil {
		c.releaseIDs(prog)
		return nil, fmt.Errorf("attach: %w", err)
	}
	t := &Tracer{c: c, prog: prog, pid: pid, bin: bin, byID: byID, base: base, uprobes: make([]int, len(byID)), endAtUprobes: make([]int, len(byID)),
		queue: make(chan readResult, tracerQueue), closing: make(chan struct{})}
	global := make([]*Resolved, base+len(byID))
	copy(global[base:], byID)
	t.dec = decoder{probes: global, monoToWall: monoToWall(), itabType: t.itabType}
	if pid > 0 {
		// Without ptrace access errors keep only their type.
		t.dec.sentinels, _ = bin.ReadProcessSentinels(pid)
	}
	if err := t.register(); err != nil {
		c.releaseIDs(prog)
		return nil, err
	}
	if err := c.setSampleBound(bound); err != nil {
		t.Close()
		return nil, fmt.Errorf("attach: %w", err)
	}
	// Given up before anything is attached: the earlier Tracer of the
	// process keeps its uprobes.
	if err := attachCanceled(ctx, pid); err != nil {
		t.Close()
		return nil, err
	}
	// A Tracer of this process not closed yet (the agent closes a
	// detached one in the background) loses its uprobes now: two sets on
	// one function would open every span twice.
	for _, o := range c.olderOf(t) {
		if err := o.closeLinks(); err != nil {
			t.Close()
			return nil, fmt.Errorf("attach: detach the earlier uprobes of pid %d: %w", pid, err)
		}
	}
	if err := t.setup(ctx, prog, pid, opts); err != nil {
		t.Close()
		return nil, err
	}
	t.attached.Store(true)
	return t, nil
}

// register makes the Tracer the receiver of its process's events.
func (t *Tracer) register() error {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("attach: %w", ErrClosed)
	}
	c.attaches++
	t.seq = c.attaches
	c.tracers[t] = struct{}{}
	c.setRoutes()
	return nil
}

// closeLinks detaches the Tracer's uprobes, once.
func (t *Tracer) closeLinks() error {
	t.linksOnce.Do(func() {
		var errs []error
		for i := len(t.links) - 1; i >= 0; i-- {
			errs = append(errs, t.links[i].Close())
		}
		t.linksErr = errors.Join(errs...)
	})
	return t.linksErr
}

// olderOf returns the other Tracers of t's process (none for pid 0).
func (c *Capture) olderOf(t *Tracer) []*Tracer {
	if t.pid == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Tracer
	for o := range c.tracers {
		if o != t && o.pid == t.pid {
			out = append(out, o)
		}
	}
	return out
}

// ownsID tells whether a kernel probe id is one of this Tracer's.
func (t *Tracer) ownsID(id uint32) bool {
	return int(id) >= t.base && int(id) < t.base+len(t.byID)
}

// setup attaches the uprobes, stopping when ctx is done.
func (t *Tracer) setup(ctx context.Context, prog *Program, pid int, opts Options) error {
	if err := attachCanceled(ctx, pid); err != nil {
		return err
	}
	ex, err := link.OpenExecutable(prog.Binary)
	if err != nil {
		return fmt.Errorf("attach: open executable %s: %w", prog.Binary, err)
	}
	for _, p := range t.byID {
		if p == nil {
			continue
		}
		entry := p.EntryOffset
		if opts.Placement == PlacementSymbol {
			entry = p.SymbolOffset
		}
		id := uint64(t.base + p.ID)
		cookie := id
		if slices.Contains(p.ReturnOffsets, entry) {
			cookie |= cookieEntryIsReturn
		}
		if p.EndNext {
			// Ends at the next span's entry: no RET uprobe at all.
			cookie = id
		}
		t.linker.add(t.c.progs.entry, p.Spec.Symbol, entry, cookie)
		t.uprobes[p.ID]++
		if p.EndAt != nil {
			at := p.EndAt.EntryOffset
			if opts.Placement == PlacementSymbol {
				at = p.EndAt.SymbolOffset
			}
			t.linker.add(t.c.progs.entry, p.Spec.EndAt, at, id|cookieEndAt)
			t.uprobes[p.ID]++
			t.endAtUprobes[p.ID]++
		}
		for _, off := range p.ReturnOffsets {
			if p.EndNext {
				break
			}
			if off == entry {
				continue
			}
			t.linker.add(t.c.progs.ret, p.Spec.Symbol, off, id)
			t.uprobes[p.ID]++
		}
	}
	if opts.HandOff {
		if err := PartHandOff.Check(t.bin); err != nil {
			t.handOffOff = err.Error()
		} else if err := t.attachHandOff(); err != nil {
			return err
		}
	}
	if err := attachCanceled(ctx, pid); err != nil {
		return err
	}
	if err := t.attachPropagation(pid, opts.Propagation); err != nil {
		return err
	}
	links, err := t.linker.attach(ctx, ex, t.c.mode, pid)
	t.links = links
	return err
}

// checkOptions validates opts and returns the ring buffer size and the
// kernel's sampling bound (ratio * 2^63).
func checkOptions(opts Options) (int, uint64, error) {
	ring, err := checkRing(opts.RingBufferBytes)
	if err != nil {
		return 0, 0, err
	}
	if opts.Placement != PlacementPrologue && opts.Placement != PlacementSymbol {
		return 0, 0, fmt.Errorf("placement %d: use PlacementPrologue or PlacementSymbol: %w", opts.Placement, ErrInvalidOptions)
	}
	bound := uint64(1) << 63 // always_on: (trace_lo >> 1) < 2^63 holds for every id
	if r := opts.SampleRatio; r != nil {
		if math.IsNaN(*r) || *r < 0 || *r > 1 {
			return 0, 0, fmt.Errorf("sample ratio %v: use a fraction between 0 and 1: %w", *r, ErrInvalidOptions)
		}
		if *r < 1 {
			bound = uint64(*r * (1 << 63))
		}
	}
	return ring, bound, nil
}

// itabType names the concrete type of an error from its itab address. Go
// executables are not position independent by default, so the itab's
// address at run time is its address in the file; for a PIE binary the
// lookup fails and the error keeps no type or message.
func (t *Tracer) itabType(itab uint64) string {
	name, _ := t.bin.ItabType(itab)
	return name
}

// monoToWall returns what to add to a CLOCK_MONOTONIC time (the kernel's
// bpf_ktime_get_ns) to get Unix nanoseconds, measured between two wall
// clock reads.
func monoToWall() int64 {
	var ts unix.Timespec
	before := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	after := time.Now()
	wall := before.UnixNano() + after.Sub(before).Nanoseconds()/2
	return wall - ts.Nano()
}

// Read blocks until the kernel reports a finished span of this Tracer's
// process and returns it decoded. It returns ctx's error when ctx is done, and
// ErrClosed once the Tracer or its Capture is closed, also when Close is
// called during Read. A record that cannot be decoded gives an error
// wrapping ErrBadEvent; the next Read goes on with the next record.
func (t *Tracer) Read(ctx context.Context) (Event, error) {
	var ev Event
	err := t.ReadInto(ctx, &ev)
	return ev, err
}

// ReadInto is Read into ev, overwriting all of it.
func (t *Tracer) ReadInto(ctx context.Context, ev *Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-t.closing:
		return ErrClosed
	default:
	}
	select {
	case r := <-t.queue:
		t.read.Add(1)
		*ev = r.ev
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	case <-t.closing:
		return ErrClosed
	case <-t.c.done:
		return ErrClosed
	}
}

// Lost returns the number of events of this Tracer's process the kernel
// dropped because the ring buffer was full (pid 0: of every process).
func (t *Tracer) Lost() uint64 { return t.c.lostOf(t.pid) }

// PID is the process the Tracer is attached to (0: every process running
// its binary).
func (t *Tracer) PID() int { return t.pid }

// Stats reads the per-probe counters of the Tracer's process from the
// kernel (pid 0: summed over every process).
func (t *Tracer) Stats() Stats {
	s := Stats{Lost: t.Lost(), HandOffUprobes: t.handOff, HandOffOff: t.handOffOff}
	s.Read = t.read.Load()
	var sums map[uint32]bpf.CaptureProbeCounters
	if t.pid == 0 {
		sums = t.sumCounters()
	}
	for id, p := range t.byID {
		if p == nil {
			continue
		}
		ps := ProbeStats{Symbol: p.Spec.Symbol, Span: p.Spec.Span, Uprobes: t.uprobes[id], EndAt: p.Spec.EndAt, EndAtUprobes: t.endAtUprobes[id]}
		gid := uint32(t.base + id)
		if sums != nil {
			addCounters(&ps, sums[gid])
		} else {
			var perCPU []bpf.CaptureProbeCounters
			if err := t.c.maps.Counters.Lookup(bpf.CaptureCounterKey{Tgid: uint32(t.pid), ProbeId: gid}, &perCPU); err == nil {
				addCounters(&ps, sumPerCPU(perCPU))
			}
		}
		s.Probes = append(s.Probes, ps)
	}
	return s
}

// sumCounters sums every process's counters by probe id.
func (t *Tracer) sumCounters() map[uint32]bpf.CaptureProbeCounters {
	out := map[uint32]bpf.CaptureProbeCounters{}
	var k bpf.CaptureCounterKey
	var perCPU []bpf.CaptureProbeCounters
	it := t.c.maps.Counters.Iterate()
	for it.Next(&k, &perCPU) {
		if !t.ownsID(k.ProbeId) {
			continue
		}
		sum := out[k.ProbeId]
		addPerCPU(&sum, perCPU)
		out[k.ProbeId] = sum
	}
	return out
}

func addCounters(ps *ProbeStats, c bpf.CaptureProbeCounters) {
	ps.Entries += c.Entries
	ps.Returns += c.Returns
	ps.Abandoned += c.Abandoned
	ps.Emitted += c.Emitted
	ps.Overflow += c.Overflow
	ps.Unmatched += c.Unmatched
	ps.Skipped += c.Skipped
	ps.EndAtHits += c.EndAt
}

// LinkMode reports how the uprobes were attached.
func (t *Tracer) LinkMode() LinkMode { return t.c.mode }

// Close detaches every uprobe of the Tracer and frees what it alone used
// (its Capture too when Attach made it). It is idempotent; a Read blocked
// in another goroutine returns ErrClosed.
func (t *Tracer) Close() error {
	t.closeOnce.Do(func() {
		c := t.c
		// Stop routing first: the reader must not wait on this queue.
		c.mu.Lock()
		delete(c.tracers, t)
		c.setRoutes()
		c.mu.Unlock()
		close(t.closing)
		errs := []error{t.closeLinks()}
		if t.injecting {
			errs = append(errs, c.removeInjected(t.pid, t.prop.Cgroup))
		}
		c.forget(t.pid, t.base, len(t.byID))
		errs = append(errs, c.releaseIDs(t.prog))
		if t.own {
			errs = append(errs, c.Close())
		}
		if err := errors.Join(errs...); err != nil {
			t.closeErr = fmt.Errorf("close tracer: %w", err)
		}
	})
	return t.closeErr
}
