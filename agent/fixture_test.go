package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/routerscope/routerscope/internal/testenv"
	"github.com/routerscope/routerscope/probes"
)

// chanSource is a synthetic EventSource fed by a test.
type chanSource struct {
	ch     chan probes.Event
	closed chan struct{}
	once   sync.Once
	lost   atomic.Uint64
	closes atomic.Int32
	// reads counts the Read calls: the agent reads a capture and handles
	// each event in one goroutine, so once Read is called again the
	// event it returned before has been handled.
	reads atomic.Int32
}

var errSourceClosed = errors.New("source closed")

func newChanSource() *chanSource {
	return &chanSource{ch: make(chan probes.Event), closed: make(chan struct{})}
}

func (s *chanSource) Read(ctx context.Context) (probes.Event, error) {
	s.reads.Add(1)
	select {
	case <-ctx.Done():
		return probes.Event{}, ctx.Err()
	case <-s.closed:
		return probes.Event{}, errSourceClosed
	case ev, ok := <-s.ch:
		if !ok {
			return probes.Event{}, errSourceClosed
		}
		return ev, nil
	}
}

// handled waits until the agent has handled the n events fed so far (it
// is reading again for the next one).
func (s *chanSource) handled(t *testing.T, n int) {
	t.Helper()
	testenv.Eventually(t, fmt.Sprintf("%d events handled", n), func() bool { return s.reads.Load() > int32(n) })
}

func (s *chanSource) Lost() uint64 { return s.lost.Load() }

func (s *chanSource) Close() error {
	s.closes.Add(1)
	s.once.Do(func() { close(s.closed) })
	return nil
}

// madeUpTarget lets Run trace a made-up PID (4242) as a live process. On a
// busy machine that PID may belong to a real process (another test's), which
// Run must not read: its start time would make the agent detach when that
// process exits, and its procfs entry would name the target. So procfs is
// an empty directory and liveness is faked.
func madeUpTarget(t testing.TB) Option {
	dir := t.TempDir()
	return func(o *runOptions) {
		o.alive = func(uint32) bool { return true }
		o.procRoot = dir
	}
}
