package agent

import (
	"context"
	"errors"
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

// exitPollTimeout is how often a watcher checks its context while it
// waits; the exit itself wakes it at once.
const exitPollTimeout = 250 * time.Millisecond

// watchExit waits for the attached process to exit and reports the
// moment to the run loop. The capture's Read does not end when its
// target exits, and the liveness sweep runs once a second: without this,
// `run --pid` kept running after its target was gone, and a killed
// request's span ended up to a second late (900 ms instead of ~20 ms). A
// pidfd (Linux 5.3) becomes readable when its process exits, so the
// time is taken as it happens. Where pidfds are missing, or the process
// is already gone, the sweep notices instead (see reapExited).
func (m *manager) watchExit(ctx context.Context, a *attachment) {
	fd, err := unix.PidfdOpen(a.key.pid, 0)
	if err != nil {
		// Gone before its watcher started (killed at once, or the
		// watcher goroutine ran late on a loaded machine): report the
		// exit now, not at the next sweep.
		if errors.Is(err, unix.ESRCH) && !m.keyAlive(a.key) {
			m.notifyExit(ctx, a)
		}
		return
	}
	defer unix.Close(fd)
	// The process may have exited between the attach and the open (a
	// zombie still has its pid), or its pid may even have been reused:
	// either way the attached process is gone, so its exit is reported
	// now rather than at the next sweep.
	if !m.keyAlive(a.key) {
		m.notifyExit(ctx, a)
		return
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for ctx.Err() == nil {
		n, err := unix.Poll(fds, int(exitPollTimeout/time.Millisecond))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		if n == 0 {
			continue
		}
		m.notifyExit(ctx, a)
		return
	}
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
	n := m.asm.EndProcess(uint32(a.key.pid), at)
	m.log.Info("process exited: ended its open spans as failed", zap.Int(LogKeyPID, a.key.pid), zap.Int(LogKeyCount, n))
	m.detach(a, reasonExited)
	m.met.attached.Set(float64(len(m.atts)))
}

// reapExited detaches attached processes that are gone, for kernels
// without pidfds and processes that exited before their watcher started.
func (m *manager) reapExited() {
	for _, a := range m.atts {
		if !m.keyAlive(a.key) {
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
		m.log.Warn("take the open spans of an exited or detached process", zap.Int(LogKeyPID, a.key.pid), zap.Error(err))
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
