package probes

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/routerscope/routerscope/bpf"
)

// ExecWatcher reports that programs were executed on the node (the
// sched_process_exec raw tracepoint, bpf/execwatch.c), so discovery can
// sleep until a new process may match a rule instead of polling /proc.
// It needs CAP_BPF and CAP_PERFMON, and neither tracefs nor kernel BTF.
type ExecWatcher struct {
	objs bpf.ExecWatchObjects
	lnk  link.Link
	rd   *ringbuf.Reader
	rec  ringbuf.Record

	closeOnce sync.Once
	closeErr  error
}

// ErrNotHostPIDNamespace is returned by NewExecWatcher when the caller is
// not in the initial PID namespace: the kernel reports the pids of that
// namespace, which the caller's /proc does not show (a pod without
// hostPID).
var ErrNotHostPIDNamespace = errors.New("not in the host's PID namespace (run with hostPID): exec pids would not match /proc")

// initPIDNamespace is /proc/self/ns/pid in the initial PID namespace: its
// inode is the fixed PROC_PID_INIT_INO (include/linux/proc_ns.h, since
// Linux 3.8).
const initPIDNamespace = "pid:[4026531836]"

// NewExecWatcher loads the exec program and attaches it; the caller
// closes the watcher. The kernel records every exec but wakes a waiting
// Wait at most once per minGap; the records in between are read at that
// wake-up or after Flush. So however many programs the node runs, the
// watcher wakes its reader at most 1/minGap times a second (plus the
// caller's flushes). Nothing is left loaded when it fails.
func NewExecWatcher(minGap time.Duration) (_ *ExecWatcher, err error) {
	if minGap < 0 {
		return nil, fmt.Errorf("exec watch: negative gap %v", minGap)
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return nil, fmt.Errorf("read the PID namespace: %w", err)
	}
	if ns != initPIDNamespace {
		return nil, fmt.Errorf("exec watch in %s: %w", ns, ErrNotHostPIDNamespace)
	}
	spec, err := bpf.LoadExecWatch()
	if err != nil {
		return nil, fmt.Errorf("load exec watch spec: %w", err)
	}
	if err := spec.Variables[bpf.ExecWatchVarMinGapNs].Set(uint64(minGap)); err != nil {
		return nil, fmt.Errorf("set exec watch gap: %w", err)
	}
	// The smallest ring the kernel accepts is one page (4 KiB on amd64,
	// up to 64 KiB on arm64): 8-byte records, one is enough to wake.
	spec.Maps["exec_events"].MaxEntries = uint32(os.Getpagesize())
	w := &ExecWatcher{}
	if err := spec.LoadAndAssign(&w.objs, nil); err != nil {
		return nil, fmt.Errorf("load exec watch programs: %w", err)
	}
	defer func() {
		if err != nil {
			_ = w.Close()
		}
	}()
	if w.lnk, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sched_process_exec", Program: w.objs.OnExec}); err != nil {
		return nil, fmt.Errorf("attach raw tracepoint sched_process_exec: %w", err)
	}
	if w.rd, err = ringbuf.NewReader(w.objs.ExecEvents); err != nil {
		return nil, fmt.Errorf("open exec ring buffer: %w", err)
	}
	return w, nil
}

// Wait returns the pid of the next exec record, blocking until the
// kernel wakes the reader (see NewExecWatcher) or Flush is called; it
// returns ErrClosed once Close was called. Only one goroutine may wait at
// a time.
func (w *ExecWatcher) Wait() (uint32, error) {
	for {
		err := w.rd.ReadInto(&w.rec)
		if err == nil {
			break
		}
		if errors.Is(err, ringbuf.ErrFlushed) {
			continue // every record before the flush was returned
		}
		if errors.Is(err, os.ErrClosed) {
			return 0, ErrClosed
		}
		return 0, fmt.Errorf("read exec events: %w", err)
	}
	if s := w.rec.RawSample; len(s) >= 4 {
		return binary.NativeEndian.Uint32(s), nil
	}
	return 0, nil
}

// Flush makes a blocked Wait return the records the kernel wrote without
// waking it; with none, it does nothing (a flush wakes the reader).
func (w *ExecWatcher) Flush() error {
	if w.rd.AvailableBytes() == 0 {
		return nil
	}
	if err := w.rd.Flush(); err != nil {
		return fmt.Errorf("flush exec events: %w", err)
	}
	return nil
}

// Dropped is the number of exec records the full ring had no room for:
// when it grows, some execs are unknown and /proc must be walked.
func (w *ExecWatcher) Dropped() uint64 {
	var n uint64
	if err := w.objs.ExecDropped.Get(&n); err != nil {
		return 0
	}
	return n
}

// Close detaches the program and ends a pending Wait; it is idempotent.
func (w *ExecWatcher) Close() error {
	w.closeOnce.Do(func() {
		var errs []error
		if w.rd != nil {
			errs = append(errs, w.rd.Close())
		}
		if w.lnk != nil {
			errs = append(errs, w.lnk.Close())
		}
		errs = append(errs, w.objs.Close())
		w.closeErr = errors.Join(errs...)
	})
	return w.closeErr
}
