package probes

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
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
	// Uprobes is the number of uprobes attached: one entry plus one per RET.
	Uprobes int
	// Entries and Returns count spans opened and closed at a RET, sampled or
	// not; Abandoned counts spans closed because their frame was gone.
	Entries, Returns, Abandoned uint64
	// Emitted counts events written to the ring buffer.
	Emitted uint64
	// Overflow counts entries not tracked because the goroutine already had
	// MaxDepth open spans.
	Overflow uint64
	// Unmatched counts RETs without a matching open span (functions entered
	// before Attach).
	Unmatched uint64
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

// Tracer is a Program attached to a process. Read is meant for one reader
// goroutine; Stats, Lost and Close may be called from any goroutine.
type Tracer struct {
	prog    *Program
	bin     *Binary // for runtime.newproc1 and the names of error types
	maps    bpf.CaptureMaps
	progs   programs
	mode    LinkMode
	linker  linker
	links   []link.Link
	uprobes []int // per probe id
	handOff int
	// handOffOff says why hand-off was asked for and is off.
	handOffOff string
	// W3C trace context (propagation.go, inject.go).
	prop        PropagationStatus
	propProgs   propPrograms
	propUprobes int
	injector    *injector
	rd          *ringbuf.Reader
	dec         decoder

	readMu sync.Mutex // one Read at a time: rec is reused
	rec    ringbuf.Record
	cfg    bpf.CaptureConfig // as written at setup; Read sets ReaderIdle
	idle   bool              // under readMu: the last poll found nothing
	read   atomic.Uint64     // not under readMu: Stats must not wait for a blocked Read

	closeOnce sync.Once
	closeErr  error
}

// Attach loads the kernel programs, writes a descriptor per probe and
// attaches the uprobes of prog to the process pid (pid 0: every process
// running prog.Binary). A failed Attach detaches and frees what it had set up.
func Attach(prog *Program, pid int, opts Options) (*Tracer, error) {
	if prog == nil {
		return nil, fmt.Errorf("attach: nil program: %w", ErrInvalidOptions)
	}
	if pid < 0 {
		return nil, fmt.Errorf("attach to pid %d: want a process id, or 0 for every process: %w", pid, ErrInvalidOptions)
	}
	ringBytes, bound, err := checkOptions(opts)
	if err != nil {
		return nil, err
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

	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("attach: remove the memlock limit: %w", err)
	}
	spec, err := bpf.LoadCapture()
	if err != nil {
		return nil, fmt.Errorf("attach: load the capture object: %w", err)
	}
	events := spec.Maps["events"]
	if events == nil {
		return nil, fmt.Errorf("attach: the capture object has no events map: regenerate package bpf (make generate)")
	}
	events.MaxEntries = uint32(ringBytes)

	bin, err := OpenBinary(prog.Binary)
	if err != nil {
		return nil, fmt.Errorf("attach: %w", err)
	}
	// Every span reads the goroutine's g: a release the engine is not
	// verified on is refused rather than traced with garbage depths.
	if err := PartCapture.Check(bin); err != nil {
		bin.Close()
		return nil, fmt.Errorf("attach: %w", err)
	}
	t := &Tracer{prog: prog, bin: bin, uprobes: make([]int, len(byID))}
	t.dec = decoder{probes: byID, monoToWall: monoToWall(), itabType: t.itabType}
	if pid > 0 {
		// Without ptrace access errors keep only their type.
		t.dec.sentinels, _ = bin.ReadProcessSentinels(pid)
	}
	t.mode = chooseLinkMode()
	if opts.PerfEventLinks {
		t.mode = LinkPerfEvent
	}
	if t.maps, t.progs, err = loadCapture(spec, t.mode); err != nil {
		bin.Close()
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("attach: load the capture programs: %+v", verr)
		}
		return nil, fmt.Errorf("attach: load the capture programs: %w", err)
	}
	if err := t.setup(prog, pid, opts, descs, ringBytes, bound); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// setup fills the maps, attaches the uprobes and opens the ring buffer.
func (t *Tracer) setup(prog *Program, pid int, opts Options, descs [][]byte, ring int, bound uint64) error {
	t.cfg = bpf.CaptureConfig{SampleBound: bound, WakeupBytes: wakeupBytes(ring)}
	if err := t.maps.Config.Put(uint32(0), t.cfg); err != nil {
		return fmt.Errorf("attach: write the sampling config: %w", err)
	}
	for id, d := range descs {
		if d == nil {
			continue
		}
		if err := t.maps.Descs.Put(uint32(id), d); err != nil {
			return fmt.Errorf("attach: write the descriptor of probe %d: %w", id, err)
		}
	}
	ex, err := link.OpenExecutable(prog.Binary)
	if err != nil {
		return fmt.Errorf("attach: open executable %s: %w", prog.Binary, err)
	}
	for _, p := range t.dec.probes {
		if p == nil {
			continue
		}
		entry := p.EntryOffset
		if opts.Placement == PlacementSymbol {
			entry = p.SymbolOffset
		}
		cookie := uint64(p.ID)
		if slices.Contains(p.ReturnOffsets, entry) {
			cookie |= cookieEntryIsReturn
		}
		t.linker.add(t.progs.entry, p.Spec.Symbol, entry, cookie)
		t.uprobes[p.ID]++
		for _, off := range p.ReturnOffsets {
			if off == entry {
				continue
			}
			t.linker.add(t.progs.ret, p.Spec.Symbol, off, uint64(p.ID))
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
	if err := t.attachPropagation(pid, opts.Propagation); err != nil {
		return err
	}
	links, err := t.linker.attach(ex, t.mode, pid)
	t.links = links
	if err != nil {
		return err
	}
	if t.rd, err = ringbuf.NewReader(t.maps.Events); err != nil {
		return fmt.Errorf("attach: open the event ring buffer: %w", err)
	}
	return nil
}

// checkOptions validates opts and returns the ring buffer size and the
// kernel's sampling bound (ratio * 2^63).
func checkOptions(opts Options) (int, uint64, error) {
	ring := opts.RingBufferBytes
	if ring == 0 {
		ring = DefaultRingBufferBytes
	}
	page := os.Getpagesize()
	if ring < page || ring&(ring-1) != 0 || ring > 1<<30 {
		return 0, 0, fmt.Errorf("ring buffer of %d bytes: use a power of two between %d and 1 GiB: %w", ring, page, ErrInvalidOptions)
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

// Read blocks until the kernel reports a finished span and decodes it. It
// returns ctx's error when ctx is done, and ErrClosed once the Tracer is
// closed, also when Close is called during Read. A record that cannot be
// decoded gives an error wrapping ErrBadEvent; the next Read goes on with
// the next record.
func (t *Tracer) Read(ctx context.Context) (Event, error) {
	var ev Event
	err := t.ReadInto(ctx, &ev)
	return ev, err
}

// ReadInto is Read into ev, overwriting all of it. Records are read
// straight from the ring buffer's shared memory while there are any; only
// an empty ring costs a system call (a wait).
func (t *Tracer) ReadInto(ctx context.Context, ev *Event) error {
	t.readMu.Lock()
	defer t.readMu.Unlock()
	if t.rd == nil {
		return ErrClosed
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// The kernel wakes the reader only for batches (wakeupBytes), so
		// wait at most pollInterval for the stragglers of a busy period;
		// after a poll that found nothing, sleep until the kernel's next
		// record (or ctx) wakes the reader.
		deadline := time.Now().Add(pollInterval)
		var stop func() bool
		cfg := t.cfg
		cfg.ReaderIdle = 1
		// When the kernel cannot be told (Close is under way), keep polling.
		if t.idle && t.maps.Config.Put(uint32(0), cfg) == nil {
			deadline = time.Time{}
			// Flush wakes the wait, which then sees ctx done.
			stop = context.AfterFunc(ctx, func() { _ = t.rd.Flush() })
		}
		if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
			deadline = d
		}
		t.rd.SetDeadline(deadline)
		err := t.rd.ReadInto(&t.rec)
		if stop != nil {
			stop()
		}
		switch {
		case err == nil:
			t.idle = false
			t.read.Add(1)
			if err := t.dec.decodeInto(t.rec.RawSample, ev); err != nil {
				return err
			}
			if (ev.Kind == EventEntry || ev.Kind == EventSpan) && ev.RemoteParent {
				// One map lookup per request that came with a traceparent.
				ev.TraceState = t.traceState(ev.TraceID)
			}
			return nil
		case errors.Is(err, ringbuf.ErrClosed):
			return ErrClosed
		case errors.Is(err, os.ErrDeadlineExceeded):
			t.idle = true
			continue
		case errors.Is(err, ringbuf.ErrFlushed):
			continue
		default:
			return fmt.Errorf("read the event ring buffer: %w", err)
		}
	}
}

// Lost returns the number of events the kernel dropped because the ring
// buffer was full.
func (t *Tracer) Lost() uint64 {
	var perCPU []uint64
	if err := t.maps.Lost.Lookup(uint32(0), &perCPU); err != nil {
		return 0
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n
}

// Stats reads the per-probe counters from the kernel.
func (t *Tracer) Stats() Stats {
	s := Stats{Lost: t.Lost(), HandOffUprobes: t.handOff, HandOffOff: t.handOffOff}
	s.Read = t.read.Load()
	for id, p := range t.dec.probes {
		if p == nil {
			continue
		}
		ps := ProbeStats{Symbol: p.Spec.Symbol, Span: p.Spec.Span, Uprobes: t.uprobes[id]}
		var perCPU []bpf.CaptureProbeCounters
		if err := t.maps.Counters.Lookup(uint32(id), &perCPU); err == nil {
			for _, c := range perCPU {
				ps.Entries += c.Entries
				ps.Returns += c.Returns
				ps.Abandoned += c.Abandoned
				ps.Emitted += c.Emitted
				ps.Overflow += c.Overflow
				ps.Unmatched += c.Unmatched
			}
		}
		s.Probes = append(s.Probes, ps)
	}
	return s
}

// LinkMode reports how the uprobes were attached.
func (t *Tracer) LinkMode() LinkMode { return t.mode }

// Close detaches every uprobe and frees the kernel objects. It is
// idempotent; a Read blocked in another goroutine returns ErrClosed.
func (t *Tracer) Close() error {
	t.closeOnce.Do(func() {
		var errs []error
		if t.rd != nil {
			// Closing the reader first wakes a blocked Read.
			errs = append(errs, t.rd.Close())
		}
		if t.injector != nil {
			errs = append(errs, t.injector.close())
		}
		for i := len(t.links) - 1; i >= 0; i-- {
			errs = append(errs, t.links[i].Close())
		}
		errs = append(errs, t.propProgs.close())
		errs = append(errs, t.progs.close(), t.maps.Close(), t.bin.Close())
		if err := errors.Join(errs...); err != nil {
			t.closeErr = fmt.Errorf("close tracer: %w", err)
		}
	})
	return t.closeErr
}
