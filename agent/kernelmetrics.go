package agent

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/routerscope/routerscope/probes"
)

// KernelStats reads the capture engine's kernel counters; ok is false
// while nothing is loaded (no process attached yet).
type KernelStats func() (s probes.CaptureStats, ok bool)

// WithKernelStats exposes the kernel's counters on /metrics, read at each
// scrape (the capture engine's Capture.Stats).
func WithKernelStats(f KernelStats) Option { return func(o *runOptions) { o.kernelStats = f } }

// kernelCollector turns one CaptureStats read per scrape into metrics. The
// pid label is the traced process as the agent sees it (host PID
// namespace); probe is the span name of the probe.
type kernelCollector struct {
	stats KernelStats
	probe map[string]*prometheus.Desc
	lost  *prometheus.Desc
	prop  *prometheus.Desc
	sock  *prometheus.Desc
	// Map gauges: capacity, entries in use (hash maps), memory.
	mapCap, mapEntries, mapBytes *prometheus.Desc
	unrouted                     *prometheus.Desc
}

// Names of the per-probe kernel counters, with their help, in the order
// probeCounterValues returns them.
var probeCounters = []struct{ name, help string }{
	{"kernel_spans_opened_total", "Spans the kernel opened at a probe's entry (sampled or not), by process and probe."},
	{"kernel_spans_closed_total", "Spans the kernel closed at a RET, by process and probe."},
	{"kernel_spans_abandoned_total", "Spans closed because their frame was gone (a panic unwound it, or the goroutine ended), by process and probe."},
	{"kernel_records_emitted_total", "Span records written to the ring buffer, by process and probe."},
	{"kernel_spans_overflow_total", "Entries not tracked because the goroutine already had 16 open spans (deep recursion of probed functions), by process and probe."},
	{"kernel_returns_unmatched_total", "RETs with no matching open span (calls entered before the attach, or a goroutine's span stack evicted from the stacks map), by process and probe."},
	{"kernel_spans_skipped_total", "Entries inside a trace the sampler dropped, not opened, by process and probe."},
	{"kernel_end_at_total", "Entries of a probe's end_at function, each ending the spans whose frames are gone (the probe's own included), by process and probe."},
}

func probeCounterValues(p probes.ProbeStats) []uint64 {
	return []uint64{p.Entries, p.Returns, p.Abandoned, p.Emitted, p.Overflow, p.Unmatched, p.Skipped, p.EndAtHits}
}

func newKernelCollector(f KernelStats) *kernelCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(metricsNamespace+"_"+name, help, labels, nil)
	}
	c := &kernelCollector{stats: f, probe: map[string]*prometheus.Desc{}}
	for _, pc := range probeCounters {
		c.probe[pc.name] = desc(pc.name, pc.help, "pid", "probe")
	}
	c.lost = desc("kernel_records_lost_total", "Span records the kernel dropped because the ring buffer was full, by process.", "pid")
	c.prop = desc("kernel_propagation_total",
		"Trace context events of the uprobes, by process and event: extracted, invalid, duplicate (traceparent headers in), consumed (root spans that joined a caller's trace), tracestate_dropped, recorded (outgoing requests inside a span), armed (their writes that armed a thread).",
		"pid", "event")
	c.sock = desc("kernel_injector_total",
		"Events of the traceparent injector's socket programs, for the whole agent, by event: injected, replaced, sockets (watched), not_http, push_error, stale, undone, dropped.",
		"event")
	c.mapCap = desc("kernel_map_capacity", "Entries a kernel map holds (its size from routerscope.kernel; bytes for the ring buffer).", "map")
	c.mapEntries = desc("kernel_map_entries", "Entries in use in a hash map when scraped; an LRU map at its capacity evicts its oldest entries.", "map")
	c.mapBytes = desc("kernel_map_memory_bytes", "Locked kernel memory of a map, as the kernel reports it.", "map")
	c.unrouted = desc("kernel_records_unrouted_total", "Span records read for no attached process (it was detaching).")
	return c
}

func (c *kernelCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.probe {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{c.lost, c.prop, c.sock, c.mapCap, c.mapEntries, c.mapBytes, c.unrouted} {
		ch <- d
	}
}

func (c *kernelCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.stats()
	if !ok {
		return
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	// A probe name can repeat within a process (two probe files naming the
	// same span); the values add up rather than collide.
	type key struct{ pid, probe string }
	sums := map[key][]uint64{}
	var order []key
	for _, p := range s.Probes {
		k := key{strconv.Itoa(p.PID), p.Span}
		vals := probeCounterValues(p.ProbeStats)
		if prev, ok := sums[k]; ok {
			for i := range prev {
				prev[i] += vals[i]
			}
			continue
		}
		sums[k] = vals
		order = append(order, k)
	}
	for _, k := range order {
		for i, pc := range probeCounters {
			counter(c.probe[pc.name], sums[k][i], k.pid, k.probe)
		}
	}
	// Every traced process has a lost count, 0 until its first loss.
	lost := map[int]uint64{}
	for _, p := range s.Probes {
		lost[p.PID] = 0
	}
	for pid, n := range s.Lost {
		lost[pid] = n
	}
	for pid, n := range lost {
		counter(c.lost, n, strconv.Itoa(pid))
	}
	for pid, p := range s.Propagation {
		l := strconv.Itoa(pid)
		for event, v := range map[string]uint64{"extracted": p.Extracted, "invalid": p.Invalid, "duplicate": p.Duplicates,
			"consumed": p.Consumed, "tracestate_dropped": p.StatesDropped, "recorded": p.Recorded, "armed": p.Armed} {
			counter(c.prop, v, l, event)
		}
	}
	k := s.Sockets
	for event, v := range map[string]uint64{"injected": k.Injected, "replaced": k.Replaced, "sockets": k.Sockets, "not_http": k.NotHTTP,
		"push_error": k.PushErrors, "stale": k.Stale, "undone": k.Undone, "dropped": k.Dropped} {
		counter(c.sock, v, event)
	}
	for _, m := range s.Maps {
		gauge(c.mapCap, float64(m.MaxEntries), m.Name)
		gauge(c.mapBytes, float64(m.Bytes), m.Name)
		if m.Entries >= 0 {
			gauge(c.mapEntries, float64(m.Entries), m.Name)
		}
	}
	counter(c.unrouted, s.Unrouted)
}
