package config

import (
	"fmt"
	"time"
)

// Bounds on every size and rate a config can set, and on every file the
// agent reads. A config past one is refused at start and on reload with
// the key, the bound and what it costs; each is far above any real need.
const (
	// MaxConfigBytes bounds the config file: it is read whole, and polled
	// every watch_interval. The commented example is 6 KB.
	MaxConfigBytes = 1 << 20
	// MaxQueueSize bounds routerscope.export.queue_size. The SDK's batch
	// processor allocates its whole queue up front, one per traced process
	// (16 bytes a slot, before any span): 2,000,000,000 crashed the agent
	// at start.
	MaxQueueSize = 100_000
	// MaxProcessesLimit bounds routerscope.discovery.max_processes: each
	// process has its own queue and kernel maps.
	MaxProcessesLimit = 1024
	// MaxQueueSlots bounds queue_size times max_processes: 8 Mi slots are
	// 128 MiB of queues allocated when every process is attached.
	MaxQueueSlots = 8 << 20
	// MinInterval is the shortest discovery.interval, retry_interval and
	// watch_interval (0 turns the watch off): a /proc scan of 90 processes
	// takes about 1.2 ms, so 10 ms is already an eighth of a core, and
	// 1ns burned 93% of one.
	MinInterval = 10 * time.Millisecond
	// MaxRules, MaxTargets and MaxProbeFiles bound the lists a config
	// holds: each rule is matched against every process at every scan.
	MaxRules      = 256
	MaxTargets    = 1024
	MaxProbeFiles = 64
)

// checkLimits refuses sizes and rates past the bounds above.
func (c *Config) checkLimits() error {
	a := &c.Agent
	const q = "routerscope."
	e := a.Export
	if e.QueueSize > MaxQueueSize {
		return fmt.Errorf("%w: %sexport.queue_size: %d is more than %d (the queue is allocated up front, per traced process)", ErrConfig, q, e.QueueSize, MaxQueueSize)
	}
	d := a.Discovery
	if d.MaxProcesses > MaxProcessesLimit {
		return fmt.Errorf("%w: %sdiscovery.max_processes: %d is more than %d", ErrConfig, q, d.MaxProcesses, MaxProcessesLimit)
	}
	if e.QueueSize > 0 && d.MaxProcesses > 0 && e.QueueSize*d.MaxProcesses > MaxQueueSlots {
		return fmt.Errorf("%w: %sexport.queue_size %d times discovery.max_processes %d is more than %d queue slots (16 bytes each, allocated per traced process): lower one of them",
			ErrConfig, q, e.QueueSize, d.MaxProcesses, MaxQueueSlots)
	}
	for _, iv := range []struct {
		key string
		d   time.Duration
		off bool // zero is allowed: it turns the feature off
	}{
		{"discovery.interval", d.Interval, false},
		{"discovery.retry_interval", d.RetryInterval, false},
		{"discovery.settle", d.Settle, false},
		{"discovery.rescan_interval", d.Rescan, false},
		{"watch_interval", a.WatchInterval, true},
	} {
		if iv.d < MinInterval && !(iv.off && iv.d == 0) && iv.d > 0 {
			return fmt.Errorf("%w: %s%s: %v is shorter than %v, which already costs an eighth of a core; the default is fine for almost everyone", ErrConfig, q, iv.key, iv.d, MinInterval)
		}
	}
	if n := len(d.Rules); n > MaxRules {
		return fmt.Errorf("%w: %sdiscovery.rules: %d rules, at most %d", ErrConfig, q, n, MaxRules)
	}
	if n := len(a.Targets); n > MaxTargets {
		return fmt.Errorf("%w: %stargets: %d targets, at most %d", ErrConfig, q, n, MaxTargets)
	}
	files := len(a.Probes)
	for _, r := range d.Rules {
		files += len(r.Probes)
	}
	if files > MaxProbeFiles {
		return fmt.Errorf("%w: %sprobes: %d probe files named, at most %d", ErrConfig, q, files, MaxProbeFiles)
	}
	return nil
}
