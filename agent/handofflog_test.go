package agent

import (
	"testing"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/probes"
)

// statsSource is a chanSource that reports capture stats.
type statsSource struct {
	*chanSource
	stats probes.Stats
}

func (s statsSource) Stats() probes.Stats { return s.stats }

// TestLogHandOffOff: hand-off turned off for the target's Go release is
// said in one warning with the reason; an attachment with hand-off on, or
// a source without stats, logs nothing.
func TestLogHandOffOff(t *testing.T) {
	log, logs := observedLogger()
	target := config.Target{PID: 42}
	why := "goroutine hand-off off: /bin/router was built with go1.30.1; runtime.newproc1 is verified on go1.26 to go1.27 only"
	logHandOff(log, target, statsSource{newChanSource(), probes.Stats{HandOffOff: why}})
	logHandOff(log, target, statsSource{newChanSource(), probes.Stats{HandOffUprobes: 3}})
	logHandOff(log, target, newChanSource())
	entries := logs.All()
	if len(entries) != 1 {
		t.Fatalf("%d log lines, want 1: %v", len(entries), entries)
	}
	e := entries[0]
	if e.Message != "goroutine hand-off off" || e.ContextMap()[LogKeyHandOffNo] != why || e.Level.String() != "warn" {
		t.Errorf("log line %q %v at %s", e.Message, e.ContextMap(), e.Level)
	}
}
