package probes

import (
	"context"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"

	"github.com/routerscope/routerscope/bpf"
)

// LinkMode says how uprobes are attached.
type LinkMode int

const (
	// LinkMulti attaches each kernel program once, as an uprobe_multi link
	// carrying all its offsets and cookies (Linux 6.6+). It needs CAP_BPF
	// and CAP_PERFMON, and one link per program instead of one per offset.
	LinkMulti LinkMode = iota
	// LinkPerfEvent attaches one perf-event uprobe per offset, for kernels
	// without uprobe_multi; current kernels want CAP_SYS_ADMIN for it.
	LinkPerfEvent
)

func (m LinkMode) String() string {
	if m == LinkMulti {
		return "uprobe_multi"
	}
	return "perf_event"
}

// programs are the four capture programs of one link mode.
type programs struct {
	entry, ret, newproc1, newproc1Ret *ebpf.Program
}

// close closes the programs that were loaded.
func (p programs) close() error {
	var errs []error
	for _, prog := range []*ebpf.Program{p.entry, p.ret, p.newproc1, p.newproc1Ret} {
		if prog != nil {
			errs = append(errs, prog.Close())
		}
	}
	return errors.Join(errs...)
}

// chooseLinkMode prefers uprobe_multi links when the kernel has them.
func chooseLinkMode() LinkMode {
	if features.HaveBPFLinkUprobeMulti() == nil {
		return LinkMulti
	}
	return LinkPerfEvent
}

// loadCapture loads the maps and the programs of one link mode from spec,
// leaving the other mode's programs unloaded: a kernel without
// uprobe_multi would refuse them.
func loadCapture(spec *ebpf.CollectionSpec, mode LinkMode) (bpf.CaptureMaps, programs, error) {
	names := [4]string{bpf.CaptureProgUprobeEntry, bpf.CaptureProgUprobeReturn,
		bpf.CaptureProgUprobeNewproc1, bpf.CaptureProgUprobeNewproc1Return}
	if mode == LinkMulti {
		names = [4]string{bpf.CaptureProgUprobeMultiEntry, bpf.CaptureProgUprobeMultiReturn,
			bpf.CaptureProgUprobeMultiNewproc1, bpf.CaptureProgUprobeMultiNewproc1Return}
	}
	keep := spec.Copy()
	for name := range keep.Programs {
		if name != names[0] && name != names[1] && name != names[2] && name != names[3] {
			delete(keep.Programs, name)
		}
	}
	var maps bpf.CaptureMaps
	coll, err := ebpf.NewCollection(keep)
	if err != nil {
		return maps, programs{}, err
	}
	defer coll.Close() // closes nothing that was detached or assigned below
	if err := coll.Assign(&maps); err != nil {
		return maps, programs{}, err
	}
	p := programs{
		entry:       coll.DetachProgram(names[0]),
		ret:         coll.DetachProgram(names[1]),
		newproc1:    coll.DetachProgram(names[2]),
		newproc1Ret: coll.DetachProgram(names[3]),
	}
	return maps, p, nil
}

// attachPoint is one uprobe: a program at a file offset with its cookie.
type attachPoint struct {
	sym    string
	off    uint64
	cookie uint64
}

// linker collects the uprobes of a Tracer, then attaches them per program.
type linker struct {
	order  []*ebpf.Program
	points map[*ebpf.Program][]attachPoint
}

func (l *linker) add(prog *ebpf.Program, sym string, off, cookie uint64) {
	if l.points == nil {
		l.points = map[*ebpf.Program][]attachPoint{}
	}
	if _, ok := l.points[prog]; !ok {
		l.order = append(l.order, prog)
	}
	l.points[prog] = append(l.points[prog], attachPoint{sym, off, cookie})
}

// attach creates the links, checking ctx before each one; on error (ctx
// done included) the links made so far are returned too, for the caller
// to close.
func (l *linker) attach(ctx context.Context, ex *link.Executable, mode LinkMode, pid int) ([]link.Link, error) {
	var links []link.Link
	for _, prog := range l.order {
		if err := attachCanceled(ctx, pid); err != nil {
			return links, err
		}
		pts := l.points[prog]
		if mode == LinkPerfEvent {
			for _, pt := range pts {
				if err := attachCanceled(ctx, pid); err != nil {
					return links, err
				}
				lk, err := ex.Uprobe("", prog, &link.UprobeOptions{Address: pt.off, PID: pid, Cookie: pt.cookie})
				if err != nil {
					return links, fmt.Errorf("attach uprobe %s at %#x: %w", pt.sym, pt.off, err)
				}
				links = append(links, lk)
			}
			continue
		}
		lk, err := multi(ex, prog, pts, pid)
		if err != nil {
			return links, l.culprit(ex, prog, pts, pid, err)
		}
		links = append(links, lk)
	}
	return links, nil
}

func multi(ex *link.Executable, prog *ebpf.Program, pts []attachPoint, pid int) (link.Link, error) {
	opts := &link.UprobeMultiOptions{PID: uint32(pid)}
	for _, pt := range pts {
		opts.Addresses = append(opts.Addresses, pt.off)
		opts.Cookies = append(opts.Cookies, pt.cookie)
	}
	return ex.UprobeMulti(nil, prog, opts)
}

// culprit names the offset that made a multi link fail: the kernel
// refuses the whole link, so each offset is tried alone.
func (l *linker) culprit(ex *link.Executable, prog *ebpf.Program, pts []attachPoint, pid int, err error) error {
	for _, pt := range pts {
		lk, perr := multi(ex, prog, []attachPoint{pt}, pid)
		if perr != nil {
			return fmt.Errorf("attach uprobe %s at %#x: %w", pt.sym, pt.off, perr)
		}
		lk.Close()
	}
	return fmt.Errorf("attach %d uprobes (%s first): %w", len(pts), pts[0].sym, err)
}
