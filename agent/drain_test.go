package agent

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/agent/spans"
	"github.com/routerscope/routerscope/agent/spans/spantest"
)

// TestStopDrainsReturnsStillInFlight: the stop signal comes after the
// entries were read but before their returns (still in the ring buffer):
// the agent keeps reading briefly, and the spans end normally rather than
// as "agent stopped".
func TestStopDrainsReturnsStillInFlight(t *testing.T) {
	var out bytes.Buffer
	cfg := config.DefaultConfig()
	cfg.Agent.Targets = []config.Target{{PID: 4242}}
	cfg.Agent.Probes = []string{"p.yaml"}
	src := newChanSource()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := runAsync(ctx, cfg, func(context.Context, AttachRequest) (EventSource, error) { return src, nil }, observedDiscard(),
		WithStdout(&out), madeUpTarget(t))
	evs := spantest.Request(4242, 1, time.Now())
	src.ch <- evs[0]
	src.ch <- evs[1]
	cancel() // SIGTERM
	for _, ev := range evs[2:] {
		select {
		case src.ch <- ev:
		case <-time.After(5 * time.Second):
			t.Fatal("the agent stopped reading at the stop signal; the returns were lost")
		}
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), spans.ReasonAgentStopped) {
		t.Errorf("spans ended as stopped:\n%s", out.String())
	}
	if c := strings.Count(out.String(), `"Name": "semantic_router.`); c != 2 {
		t.Errorf("%d spans, want 2:\n%s", c, out.String())
	}
}

// TestStopDrainIsBounded: with events that never stop (a router still
// serving), the drain ends within drainMax and the open spans end as
// stopped.
func TestStopDrainIsBounded(t *testing.T) {
	cfg := config.DefaultConfig()
	cfg.Agent.Targets = []config.Target{{PID: 4242}}
	cfg.Agent.Probes = []string{"p.yaml"}
	src := newChanSource()
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	wait := runAsync(ctx, cfg, func(context.Context, AttachRequest) (EventSource, error) { return src, nil }, observedDiscard(),
		WithStdout(&out), madeUpTarget(t))
	src.ch <- spantest.Request(4242, 1, time.Now())[0]
	feed, stopFeed := context.WithCancel(context.Background())
	defer stopFeed()
	go func() {
		for i := 2; feed.Err() == nil; i++ {
			select {
			case src.ch <- spantest.Request(4242, byte(i), time.Now())[1]: // entries only
			case <-feed.Done():
			}
			time.Sleep(time.Millisecond)
		}
	}()
	start := time.Now()
	cancel()
	runEnds(t, wait, drainMax+10*time.Second, "the stop signal under a steady stream of events")
	t.Logf("stopped %v after the signal under load", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(out.String(), spans.ReasonAgentStopped) {
		t.Error("open spans not ended as stopped")
	}
}
