package probes

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/routerscope/routerscope/bpf"
)

// Propagation turns on W3C trace context for the target's net/http traffic
// (bpf/propagation.h, bpf/inject.c; design in package bpf's doc).
type Propagation struct {
	// Extract makes a root span the child of the traceparent of the HTTP/1.x
	// request being served on its goroutine, in the caller's trace, with the
	// caller's sampled flag deciding (parent-based). Invalid headers are
	// ignored and a fresh trace starts.
	Extract bool
	// Inject adds a traceparent carrying the innermost open span to every
	// HTTP/1.x request the target's net/http client writes while a span is
	// open. It needs a cgroup v2 hierarchy and CAP_NET_ADMIN.
	Inject bool
	// Cgroup is the cgroup v2 directory whose sockets the injector watches;
	// empty means the target's own cgroup (pid 0: the cgroup v2 root).
	Cgroup string
}

// The net/http and net/textproto functions propagation probes. Their
// signatures (Go 1.26; unchanged since Go 1.20) are quoted in
// bpf/propagation.h next to the programs that read their registers.
const (
	symHeaderLine  = "net/textproto.canonicalMIMEHeaderKey"
	symHeaderBlock = "net/textproto.readMIMEHeader"
	symRoundTrip   = "net/http.(*persistConn).roundTrip"
	symConnWrite   = "net/http.persistConnWriter.Write"
)

// PropagationStatus says which halves of propagation are active on a Tracer
// and, for one that is not, why.
type PropagationStatus struct {
	Extract, Inject bool
	// ExtractOff and InjectOff explain a half that was asked for but is off
	// (the binary does not use net/http's server or client).
	ExtractOff, InjectOff string
	// Cgroup is the cgroup v2 directory the injector is attached to.
	Cgroup string
	// Uprobes is the number of uprobes the propagation programs use.
	Uprobes int
	// Stats are the kernel's counters (see PropagationStats).
	Stats PropagationStats
}

// PropagationStats are the propagation programs' counters.
type PropagationStats struct {
	// Extracted and Invalid count incoming traceparent headers accepted and
	// ignored; Consumed counts root spans that joined an incoming trace.
	Extracted, Invalid, Consumed uint64
	// Duplicates counts header blocks with more than one traceparent
	// (treated as none, W3C Trace Context: the request starts a new trace);
	// StatesDropped tracestate lists dropped whole because, joined across
	// their header lines, they outgrew 256 bytes.
	Duplicates, StatesDropped uint64
	// Recorded counts outgoing requests sent while a span was open; Armed
	// the writes of those requests that armed their thread; Injected the
	// headers inserted into a socket's data. Sockets counts client sockets
	// the injector watches; NotHTTP armed writes that were no request line;
	// PushErrors insertions the kernel refused; Stale armings dropped as
	// too old to belong to the write at hand.
	Recorded, Armed, Injected, Sockets, NotHTTP, PushErrors, Stale uint64
	// Undone counts pushed header space removed again because it could not
	// be written (the request left as the target wrote it); Dropped counts
	// messages dropped because that removal failed too (the target's write
	// failed rather than send unwritten kernel bytes).
	Undone, Dropped uint64
	// Replaced counts requests that carried their own traceparent (an
	// application forwarding its caller's), overwritten in place with the
	// upstream span's; Kept those whose own traceparent could not be
	// (another version's length), left as written with nothing added.
	Replaced, Kept uint64
}

// propPrograms are the propagation uprobe programs of one link mode.
type propPrograms struct {
	headerLine, headerBlock, roundTrip, connWrite *ebpf.Program
}

func (p propPrograms) close() error {
	var errs []error
	for _, prog := range []*ebpf.Program{p.headerLine, p.headerBlock, p.roundTrip, p.connWrite} {
		if prog != nil {
			errs = append(errs, prog.Close())
		}
	}
	return errors.Join(errs...)
}

// propMaps are the capture maps the propagation programs use, by name:
// they are loaded as a second collection that shares these maps with the
// capture programs (the stacks to read spans from, the pending contexts).
func (c *Capture) propMaps() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		bpf.CaptureMapStacks:            c.maps.Stacks,
		bpf.CaptureMapUnsampled:         c.maps.Unsampled,
		bpf.CaptureMapRemoteParents:     c.maps.RemoteParents,
		bpf.CaptureMapHeaderScratch:     c.maps.HeaderScratch,
		bpf.CaptureMapKeyScratch:        c.maps.KeyScratch,
		bpf.CaptureMapInjectReqs:        c.maps.InjectReqs,
		bpf.CaptureMapInjectTids:        c.maps.InjectTids,
		bpf.CaptureMapPropCounters:      c.maps.PropCounters,
		bpf.CaptureMapEmptyPropCounters: c.maps.EmptyPropCounters,
		bpf.CaptureMapPendingStates:     c.maps.PendingStates,
		bpf.CaptureMapTraceStates:       c.maps.TraceStates,
		bpf.CaptureMapStateScratch:      c.maps.StateScratch,
	}
}

// loadPropPrograms loads the propagation programs of the Capture's link
// mode on the capture maps, once; c.mu is held.
func (c *Capture) loadPropPrograms() error {
	if c.propLoaded {
		return nil
	}
	spec, err := bpf.LoadCaptureForArch()
	if err != nil {
		return fmt.Errorf("load the capture object: %w", err)
	}
	names := [4]string{bpf.CaptureProgUprobeHeaderLine, bpf.CaptureProgUprobeHeaderBlock,
		bpf.CaptureProgUprobeClientRoundtrip, bpf.CaptureProgUprobeConnWrite}
	if c.mode == LinkMulti {
		names = [4]string{bpf.CaptureProgUprobeMultiHeaderLine, bpf.CaptureProgUprobeMultiHeaderBlock,
			bpf.CaptureProgUprobeMultiClientRoundtrip, bpf.CaptureProgUprobeMultiConnWrite}
	}
	for name := range spec.Programs {
		if !slices.Contains(names[:], name) {
			delete(spec.Programs, name)
		}
	}
	shared := c.propMaps()
	for name := range spec.Maps {
		if shared[name] == nil {
			delete(spec.Maps, name)
		}
	}
	c.sizes.apply(spec) // replacements must match the loaded maps' sizes
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: shared})
	if err != nil {
		if verr := withVerifierLog("load the propagation programs", err); verr != nil {
			return verr
		}
		return fmt.Errorf("load the propagation programs: %w", err)
	}
	defer coll.Close() // closes nothing that was detached below
	c.propProgs = propPrograms{
		headerLine:  coll.DetachProgram(names[0]),
		headerBlock: coll.DetachProgram(names[1]),
		roundTrip:   coll.DetachProgram(names[2]),
		connWrite:   coll.DetachProgram(names[3]),
	}
	c.propLoaded = true
	return nil
}

// propagationPrograms returns the propagation programs, loading them on
// first use.
func (c *Capture) propagationPrograms() (propPrograms, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.loadPropPrograms(); err != nil {
		return propPrograms{}, err
	}
	return c.propProgs, nil
}

// attachPropagation adds the uprobes opts.Propagation asks for to the
// Tracer's linker and has the Capture's injector watch the process's
// sockets. A binary without the probed functions (no net/http server or
// client) leaves that half off and says why in the status; any other
// failure is an error.
func (t *Tracer) attachPropagation(pid int, p Propagation) error {
	if !p.Extract && !p.Inject {
		return nil
	}
	// A half whose Go internals are not verified for this binary stays
	// off, with the reason in the status.
	if p.Extract {
		if err := PartExtract.Check(t.bin); err != nil {
			t.prop.ExtractOff = err.Error()
			p.Extract = false
		}
	}
	if p.Inject {
		if err := PartInject.Check(t.bin); err != nil {
			t.prop.InjectOff = err.Error()
			p.Inject = false
		}
	}
	if !p.Extract && !p.Inject {
		return nil
	}
	progs, err := t.c.propagationPrograms()
	if err != nil {
		return fmt.Errorf("attach trace context propagation: %w", err)
	}
	if p.Extract {
		// The header line program reads canonicalMIMEHeaderKey's argument
		// where readMIMEHeader calls it: its entry also fires for every
		// Header.Get, Set and Add with a name not in canonical form (a
		// router makes a dozen such calls per request, each a trap that
		// only finds no line behind the name).
		err := t.addFuncs([]funcProg{
			{sym: symHeaderLine, prog: progs.headerLine, where: atCallsFrom, caller: symHeaderBlock},
			{sym: symHeaderBlock, prog: progs.headerBlock, where: atEntry},
		})
		switch {
		case errors.Is(err, ErrSymbolNotFound), errors.Is(err, ErrInlined):
			t.prop.ExtractOff = fmt.Sprintf("no net/http server in %s: %v", t.bin.Path, err)
		case err != nil:
			return fmt.Errorf("attach traceparent extraction: %w", err)
		default:
			t.prop.Extract = true
		}
	}
	if p.Inject {
		err := t.addFuncs([]funcProg{
			{sym: symRoundTrip, prog: progs.roundTrip, where: atEntry},
			{sym: symConnWrite, prog: progs.connWrite, where: atEntry},
		})
		switch {
		case errors.Is(err, ErrSymbolNotFound), errors.Is(err, ErrInlined):
			t.prop.InjectOff = fmt.Sprintf("no net/http client in %s: %v", t.bin.Path, err)
			return nil
		case err != nil:
			return fmt.Errorf("attach traceparent injection: %w", err)
		}
		cgroup, err := t.c.addInjected(pid, p.Cgroup)
		if err != nil {
			return err
		}
		t.injecting = true
		t.prop.Inject = true
		t.prop.Cgroup = cgroup
	}
	return nil
}

type placement int

const (
	atEntry placement = iota
	atReturns
	// atCallsFrom is at every direct call to the function from the
	// funcProg's caller, where the arguments are in the registers the
	// function's entry would see; at its entry when the caller has no
	// such call (the compiler inlined it or calls it indirectly).
	atCallsFrom
)

// funcProg is one program to attach to one function.
type funcProg struct {
	sym   string
	prog  *ebpf.Program
	where placement
	// caller is the calling function, for atCallsFrom.
	caller string
}

// addFuncs resolves every function first, so a missing one adds nothing
// of the group, then adds the uprobes to the linker.
func (t *Tracer) addFuncs(fps []funcProg) error {
	offsets := make([][]uint64, len(fps))
	for i, fp := range fps {
		fn, err := t.bin.Function(fp.sym)
		if err != nil {
			return err
		}
		// After the stack check: the arguments are in their registers
		// and morestack does not make the probe fire twice.
		offsets[i] = []uint64{fn.EntryOffset}
		switch fp.where {
		case atReturns:
			if len(fn.ReturnOffsets) == 0 {
				return fmt.Errorf("%s in %s has no RET instruction: %w", fp.sym, t.bin.Path, ErrNotSupported)
			}
			offsets[i] = fn.ReturnOffsets
		case atCallsFrom:
			calls, err := t.bin.CallSites(fp.caller, fp.sym)
			if err != nil {
				return err
			}
			if len(calls) > 0 {
				offsets[i] = calls
			}
		}
	}
	for i, fp := range fps {
		for _, off := range offsets[i] {
			t.linker.add(fp.prog, fp.sym, off, 0)
			t.propUprobes++
		}
	}
	return nil
}

// Propagation reports which halves of W3C trace context propagation are
// active, with the kernel's counters: those of the uprobes for this
// Tracer's process (pid 0: every process), those of the socket programs
// for the whole Capture (a socket's program runs outside the process).
func (t *Tracer) Propagation() PropagationStatus {
	s := t.prop
	s.Uprobes = t.propUprobes
	add := func(perCPU []bpf.CapturePropagationCounters) { addPropCounters(&s.Stats, perCPU) }
	var perCPU []bpf.CapturePropagationCounters
	if t.pid != 0 {
		if err := t.c.maps.PropCounters.Lookup(uint32(t.pid), &perCPU); err == nil {
			add(perCPU)
		}
	} else {
		var tgid uint32
		it := t.c.maps.PropCounters.Iterate()
		for it.Next(&tgid, &perCPU) {
			add(perCPU)
		}
	}
	if t.injecting {
		t.c.injectorStats(&s.Stats)
	}
	return s
}
