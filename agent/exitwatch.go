package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/routerscope/routerscope/probes"
)

// exitNotice says an attached process exited, and when.
type exitNotice struct {
	a  *attachment
	at time.Time
}

// watchExit waits for the attached process to exit and reports the
// moment to the run loop. The capture's Read does not end when its
// target exits: without this, `run --pid` kept running after its target
// was gone, and a killed request's span ended late. A pidfd (Linux 5.3)
// becomes readable when its process exits; it is waited on in the Go
// runtime's network poller (epoll), so a watched process costs no thread
// and no wake-up until it exits, and ctx ending interrupts the wait.
// While a.exitWatched is set the run loop does not poll the process's
// liveness; where pidfds are missing, or cannot be polled, it stays unset
// and the sweep polls instead (see reapExited).
func (m *manager) watchExit(ctx context.Context, a *attachment) {
	f, err := openPidfd(a.key.PID)
	if err != nil {
		// Gone before its watcher started (killed at once, or the
		// watcher goroutine ran late on a loaded machine): report the
		// exit now, not at the next sweep.
		if errors.Is(err, unix.ESRCH) && !m.keyAlive(a.key) {
			m.notifyExit(ctx, a)
		}
		m.wakeSweep()
		return
	}
	defer f.Close()
	// The process may have exited between the attach and the open (a
	// zombie still has its pid), or its pid may even have been reused:
	// either way the attached process is gone, so its exit is reported
	// now rather than at the next sweep.
	if !m.keyAlive(a.key) {
		m.notifyExit(ctx, a)
		return
	}
	rc, err := f.SyscallConn()
	if err != nil {
		m.wakeSweep()
		return
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Now()) })
	defer stop()
	a.exitWatched.Store(true)
	err = rc.Read(func(fd uintptr) bool {
		// Called first, then after every readiness report: a poll that
		// does not wait tells whether the process has exited.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, perr := unix.Poll(fds, 0)
		return perr == nil && n > 0
	})
	if err == nil {
		m.notifyExit(ctx, a)
		return
	}
	if ctx.Err() == nil {
		// The runtime cannot poll this pidfd: the sweep polls instead.
		a.exitWatched.Store(false)
		m.wakeSweep()
	}
}

// openPidfd opens a non-blocking pidfd for pid as an *os.File, which the
// runtime then registers with its poller (PIDFD_NONBLOCK is Linux 5.10;
// before it, O_NONBLOCK is set after the open).
func openPidfd(pid int) (*os.File, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.EINVAL) {
		if fd, err = unix.PidfdOpen(pid, 0); err == nil {
			err = unix.SetNonblock(fd, true)
			if err != nil {
				unix.Close(fd)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("pidfd:%d", pid)), nil
}

// notifyExit tells the run loop that a's process exited now.
func (m *manager) notifyExit(ctx context.Context, a *attachment) {
	select {
	case m.exits <- exitNotice{a: a, at: m.o.now()}:
	case <-ctx.Done():
	}
}

// processExited ends an exited process's open spans at its exit time and
// detaches it; with only targets, the last one's exit ends Run.
func (m *manager) processExited(a *attachment, at time.Time) {
	if m.atts[a.key] != a {
		return // detached meanwhile
	}
	m.takeOpenSpans(a)
	n := m.asm.EndProcess(uint32(a.key.PID), at)
	m.log.Info("process exited: ended its open spans as failed", zap.Int(LogKeyPID, a.key.PID), zap.Int(LogKeyCount, n))
	m.detach(a, reasonExited)
	// No longer wanted either: between walks of /proc (discovery woken by
	// execs walks rarely) readiness must not wait for the exited process.
	if m.matched > 0 {
		m.matched--
	}
	m.met.attached.Set(float64(len(m.atts)))
}

// reapExited detaches attached processes that are gone, for kernels
// without pidfds and processes that exited before their watcher started:
// those whose exit no pidfd watches.
func (m *manager) reapExited() {
	for _, a := range m.atts {
		if !a.exitWatched.Load() && !m.keyAlive(a.key) {
			m.processExited(a, m.o.now())
		}
	}
}

// openSpanTaker is an EventSource whose kernel side keeps the open spans
// of its process (probes.Tracer): the kernel reports a span only when it
// ends, so those of an exited or detached process are taken from it.
type openSpanTaker interface {
	TakeOpenSpans() ([]probes.Event, error)
}

// takeOpenSpans hands the spans a's process still has open in the kernel
// to the assembler as opened spans, for the caller to end (EndProcess,
// EndDetached, EndAll), and frees their kernel entries. Into-parent probes
// are no spans of their own: their parent is ended instead.
func (m *manager) takeOpenSpans(a *attachment) int {
	src, ok := a.src.(openSpanTaker)
	if !ok {
		return 0
	}
	evs, err := src.TakeOpenSpans()
	if err != nil {
		m.log.Warn("take the open spans of an exited or detached process", zap.Int(LogKeyPID, a.key.PID), zap.Error(err))
	}
	n := 0
	for _, ev := range evs {
		if ev.Probe == nil || ev.Probe.Spec.IntoParent {
			continue
		}
		m.asm.Handle(ev)
		n++
	}
	return n
}
