package probes

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/routerscope/routerscope/bpf"
)

// CaptureOptions size a Capture. The zero value uses the defaults.
type CaptureOptions struct {
	// RingBufferBytes is the size of the one event ring buffer every traced
	// process writes to: a power of two and a multiple of the page size;
	// 0 means DefaultRingBufferBytes.
	RingBufferBytes int
	// Maps overrides entries of DefaultMapSizes.
	Maps MapSizes
	// PerfEventLinks attaches one perf-event uprobe per offset even where
	// the kernel has uprobe_multi links (see Options.PerfEventLinks).
	PerfEventLinks bool
}

// Capture is the capture object of bpf/capture.c loaded once, with its
// maps, its ring buffer and (on first use) the propagation programs and
// the injector, shared by every Tracer attached through it: the kernel
// memory is set by CaptureOptions, not by the number of processes. One
// goroutine reads the ring buffer and hands each event to the Tracer of
// its process. Close it after its Tracers.
type Capture struct {
	ring   int
	sizes  MapSizes
	mode   LinkMode
	maps   bpf.CaptureMaps
	progs  programs
	rd     *ringbuf.Reader
	routes atomic.Pointer[routes]
	// unrouted counts events of no attached Tracer (a process detaching).
	unrouted atomic.Uint64
	done     chan struct{} // closed when the reader goroutine ends

	cfgMu sync.Mutex        // orders writes of the config map
	cfg   bpf.CaptureConfig // as last written, without ReaderIdle

	mu         sync.Mutex // guards what follows
	propProgs  propPrograms
	propLoaded bool
	injector   *injector
	// owner is the Program using each descriptor id, nil when free.
	owner    []*Program
	programs map[*Program]*idRange
	tracers  map[*Tracer]struct{}
	// attaches numbers Tracers in attach order (Tracer.seq).
	attaches uint64
	closed   bool

	closeOnce sync.Once
	closeErr  error
}

// idRange is the descriptor ids a Program uses in a Capture, and its
// opened binary: the probes of one resolution (one build of a binary) are
// written once and its symbols read once, whatever the number of its
// processes.
type idRange struct {
	base, n, refs int
	bin           *Binary
}

// routes maps events to Tracers: to the newest Tracer of the event's
// process whose probe ids hold the event's (a process re-attached before
// its old Tracer closed has two), else to a Tracer of every process of a
// binary whose ids hold it.
type routes struct {
	byPID map[uint32][]*Tracer // newest first
	any   []*Tracer
}

// Check rejects a ring buffer size that is no power of two between a page
// and 1 GiB, and bad map sizes (see MapSizes.Check).
func (o CaptureOptions) Check() error {
	if _, err := checkRing(o.RingBufferBytes); err != nil {
		return err
	}
	return o.Maps.Check()
}

// NewCapture loads the capture programs and maps sized by opts and starts
// reading the ring buffer. Before Linux 5.11 BPF memory is charged to
// RLIMIT_MEMLOCK: the program must lift that limit first
// (rlimit.RemoveMemlock of cilium/ebpf), a process-wide change this package
// leaves to main.
func NewCapture(opts CaptureOptions) (*Capture, error) {
	if err := opts.Check(); err != nil {
		return nil, err
	}
	ring, _ := checkRing(opts.RingBufferBytes)
	spec, err := bpf.LoadCaptureForArch()
	if err != nil {
		return nil, fmt.Errorf("load the capture object: %w", err)
	}
	events := spec.Maps[bpf.CaptureMapEvents]
	if events == nil {
		return nil, fmt.Errorf("load the capture object: no events map: regenerate package bpf (make generate)")
	}
	c := &Capture{ring: ring, sizes: opts.Maps.withDefaults(), mode: chooseLinkMode(),
		programs: map[*Program]*idRange{}, tracers: map[*Tracer]struct{}{}, done: make(chan struct{})}
	if opts.PerfEventLinks {
		c.mode = LinkPerfEvent
	}
	c.sizes.apply(spec)
	events.MaxEntries = uint32(ring)
	c.owner = make([]*Program, c.sizes["descs"])
	c.routes.Store(&routes{})
	if c.maps, c.progs, err = loadCapture(spec, c.mode); err != nil {
		if verr := withVerifierLog("load the capture programs", err); verr != nil {
			return nil, verr
		}
		if errors.Is(err, os.ErrPermission) {
			// cilium/ebpf suggests RLIMIT_MEMLOCK, which kernels since 5.11 no
			// longer use: the usual cause is a missing capability.
			return nil, fmt.Errorf("load the capture programs: %w: %s", err, permissionHint)
		}
		return nil, fmt.Errorf("load the capture programs: %w", err)
	}
	c.cfg = bpf.CaptureConfig{SampleBound: 1 << 63, WakeupBytes: wakeupBytes(ring)}
	if err := c.maps.Config.Put(uint32(0), c.cfg); err != nil {
		c.closeKernel()
		return nil, fmt.Errorf("write the capture config: %w", err)
	}
	if c.rd, err = ringbuf.NewReader(c.maps.Events); err != nil {
		c.closeKernel()
		return nil, fmt.Errorf("open the event ring buffer: %w", err)
	}
	go c.readLoop()
	return c, nil
}

// LinkMode reports how the Capture attaches uprobes.
func (c *Capture) LinkMode() LinkMode { return c.mode }

// RingBufferBytes is the size of the event ring buffer.
func (c *Capture) RingBufferBytes() int { return c.ring }

// readLoop hands every record to its Tracer until the ring buffer closes.
// Records are read straight from the ring buffer's shared memory while
// there are any; only an empty ring costs a system call (a wait).
func (c *Capture) readLoop() {
	defer close(c.done)
	var rec ringbuf.Record
	idle := false
	for {
		// The kernel wakes the reader only for batches (wakeupBytes), so
		// wait at most pollInterval for the stragglers of a busy period;
		// after a poll that found nothing, tell the kernel (reader_idle)
		// and sleep until its next record wakes the reader. Close ends the
		// wait by closing the ring buffer.
		deadline := time.Now().Add(pollInterval)
		if idle && c.setIdle() == nil {
			// A record sent between the last poll and setIdle woke nobody:
			// look once more without waiting, then sleep.
			deadline = time.Time{}
			c.rd.SetDeadline(time.Now())
			if err := c.rd.ReadInto(&rec); err == nil {
				idle = false
				c.route(rec.RawSample)
				continue
			}
		}
		c.rd.SetDeadline(deadline)
		err := c.rd.ReadInto(&rec)
		switch {
		case err == nil:
			idle = false
			c.route(rec.RawSample)
		case errors.Is(err, os.ErrDeadlineExceeded):
			idle = true
		case errors.Is(err, ringbuf.ErrFlushed):
		default:
			return // closed, or the ring is broken: Tracers see ErrClosed
		}
	}
}

// setIdle tells the kernel the reader sleeps until the next record.
func (c *Capture) setIdle() error {
	c.cfgMu.Lock()
	defer c.cfgMu.Unlock()
	cfg := c.cfg
	cfg.ReaderIdle = 1
	return c.maps.Config.Put(uint32(0), cfg)
}

// route decodes one record for its Tracer and hands it over, waiting while
// that Tracer's queue is full (so the ring buffer, and the kernel's lost
// count, absorb a reader that falls behind) unless the Tracer closes.
func (c *Capture) route(raw []byte) {
	if len(raw) < evLen {
		c.unrouted.Add(1)
		return
	}
	pid := binary.LittleEndian.Uint32(raw[evPID:])
	id := binary.LittleEndian.Uint32(raw[evProbeID:])
	r := c.routes.Load()
	var t *Tracer
	for _, a := range r.byPID[pid] {
		if a.ownsID(id) {
			t = a
			break
		}
	}
	if t == nil {
		for _, a := range r.any {
			if a.ownsID(id) {
				t = a
				break
			}
		}
	}
	if t == nil {
		c.unrouted.Add(1)
		return
	}
	ev, err := t.dec.decode(raw)
	if err == nil && (ev.Kind == EventEntry || ev.Kind == EventSpan) && ev.RemoteParent {
		// One map lookup per request that came with a traceparent.
		ev.TraceState = t.traceState(ev.TraceID)
	}
	select {
	case t.queue <- readResult{ev, err}:
	case <-t.closing:
	}
}

// setRoutes rebuilds the routing table from c.tracers; c.mu is held.
func (c *Capture) setRoutes() {
	r := &routes{byPID: map[uint32][]*Tracer{}}
	for t := range c.tracers {
		if t.pid == 0 {
			r.any = append(r.any, t)
		} else {
			r.byPID[uint32(t.pid)] = append(r.byPID[uint32(t.pid)], t)
		}
	}
	for _, ts := range r.byPID {
		slices.SortFunc(ts, func(a, b *Tracer) int { return cmp.Compare(b.seq, a.seq) })
	}
	c.routes.Store(r)
}

// acquireIDs writes the descriptors of prog and opens its binary once, and
// returns the first id of its range and the binary (which Binary's methods
// allow to share); each call must be paired with releaseIDs.
func (c *Capture) acquireIDs(prog *Program, descs [][]byte) (int, *Binary, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, nil, ErrClosed
	}
	if r := c.programs[prog]; r != nil {
		r.refs++
		return r.base, r.bin, nil
	}
	n := max(len(descs), 1)
	base := -1
	for start := 0; start+n <= len(c.owner) && base < 0; start++ {
		free := true
		for i := start; i < start+n; i++ {
			if c.owner[i] != nil {
				free = false
				start = i
				break
			}
		}
		if free {
			base = start
		}
	}
	if base < 0 {
		return 0, nil, fmt.Errorf("%d probes: the descriptor map (%d entries, map size descs) has no room left: %w", n, len(c.owner), ErrKernelLimit)
	}
	for id, d := range descs {
		if d == nil {
			continue
		}
		if err := c.maps.Descs.Put(uint32(base+id), d); err != nil {
			return 0, nil, fmt.Errorf("write the descriptor of probe %d: %w", id, err)
		}
	}
	bin, err := OpenBinary(prog.Binary)
	if err != nil {
		return 0, nil, err
	}
	for i := base; i < base+n; i++ {
		c.owner[i] = prog
	}
	c.programs[prog] = &idRange{base: base, n: n, refs: 1, bin: bin}
	return base, bin, nil
}

// releaseIDs frees prog's descriptor ids and closes its binary when its
// last Tracer is gone.
func (c *Capture) releaseIDs(prog *Program) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.programs[prog]
	if r == nil {
		return nil
	}
	if r.refs--; r.refs > 0 {
		return nil
	}
	delete(c.programs, prog)
	for i := r.base; i < r.base+r.n; i++ {
		c.owner[i] = nil
	}
	return r.bin.Close()
}

// setSampleBound writes the kernel's sampling bound. It applies to every
// process of the Capture: the last Attach's ratio is in force.
func (c *Capture) setSampleBound(bound uint64) error {
	c.cfgMu.Lock()
	defer c.cfgMu.Unlock()
	c.cfg.SampleBound = bound
	// The reader may be asleep (reader_idle): wake it with the next record.
	cfg := c.cfg
	cfg.ReaderIdle = 1
	if err := c.maps.Config.Put(uint32(0), cfg); err != nil {
		return fmt.Errorf("write the sampling config: %w", err)
	}
	return nil
}

// Lost returns the events the kernel dropped because the ring buffer was
// full, over every process.
func (c *Capture) Lost() uint64 { return c.lostOf(0) }

// lostOf sums the kernel's lost-event counts of pid (0: every process).
func (c *Capture) lostOf(pid int) uint64 {
	var n uint64
	var perCPU []uint64
	if pid != 0 {
		if err := c.maps.Lost.Lookup(uint32(pid), &perCPU); err == nil {
			for _, v := range perCPU {
				n += v
			}
		}
		return n
	}
	var tgid uint32
	it := c.maps.Lost.Iterate()
	for it.Next(&tgid, &perCPU) {
		for _, v := range perCPU {
			n += v
		}
	}
	return n
}

// Unrouted counts events that reached no Tracer: their process was
// detaching, or the record was too short to name one.
func (c *Capture) Unrouted() uint64 { return c.unrouted.Load() }

// forget deletes the kernel's counters of pid (0: none, they are shared)
// for the probe ids [base, base+n), unless another Tracer of pid (a
// re-attach) still counts there.
func (c *Capture) forget(pid, base, n int) {
	if pid == 0 {
		return
	}
	c.mu.Lock()
	for t := range c.tracers {
		if t.pid == pid {
			c.mu.Unlock()
			return
		}
	}
	c.mu.Unlock()
	for id := base; id < base+n; id++ {
		_ = c.maps.Counters.Delete(bpf.CaptureCounterKey{Tgid: uint32(pid), ProbeId: uint32(id)})
	}
	_ = c.maps.Lost.Delete(uint32(pid))
	_ = c.maps.PropCounters.Delete(uint32(pid))
}

// Close stops the reader and frees the kernel objects; every Tracer of the
// Capture must be closed first (Close closes those that are not). It is
// idempotent.
func (c *Capture) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		open := make([]*Tracer, 0, len(c.tracers))
		for t := range c.tracers {
			open = append(open, t)
		}
		c.mu.Unlock()
		var errs []error
		for _, t := range open {
			errs = append(errs, t.Close())
		}
		if c.rd != nil {
			errs = append(errs, c.rd.Close())
			<-c.done
		}
		errs = append(errs, c.closeKernel())
		if err := errors.Join(errs...); err != nil {
			c.closeErr = fmt.Errorf("close capture: %w", err)
		}
	})
	return c.closeErr
}

// closeKernel frees the injector, the programs and the maps.
func (c *Capture) closeKernel() error {
	var errs []error
	if c.injector != nil {
		errs = append(errs, c.injector.close())
	}
	errs = append(errs, c.propProgs.close(), c.progs.close(), c.maps.Close())
	return errors.Join(errs...)
}
