package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/routerscope/routerscope/agent/export"
	"github.com/routerscope/routerscope/agent/spans"
)

// metricsNamespace prefixes every metric of the agent.
const metricsNamespace = "routerscope"

// Reasons labelling detaches and attach errors in metrics and logs.
const (
	reasonExited      = "exited"
	reasonSourceEnded = "capture_ended"
	reasonUnmatched   = "no_longer_matched"
	reasonChanged     = "config_changed"
	reasonStopped     = "agent_stopped"
	reasonLimit       = "too_many_processes"
	reasonChangedBin  = "binary_changed"
	reasonCanceled    = "canceled"
	reasonAttach      = "attach_failed"
)

// metrics is the agent's self-observability: one registry per Run, no
// global state. Counters the assembler and pipeline already keep are read
// at scrape time; the rest are counted here.
type metrics struct {
	reg *prometheus.Registry

	exportErrors *prometheus.CounterVec
	lostEvents   prometheus.Counter
	events       *prometheus.CounterVec
	attached     prometheus.Gauge
	attaches     *prometheus.CounterVec
	detaches     *prometheus.CounterVec
	attachErrors *prometheus.CounterVec
	reloads      *prometheus.CounterVec
	scans        prometheus.Counter
	checks       prometheus.Counter
	execs        prometheus.Counter

	// ready is set by the run loop (see readiness).
	ready atomic.Bool
	// notReady is why the agent is not ready, for /readyz (trouble.go).
	notReady atomic.Pointer[string]
}

func newMetrics(asm *spans.Assembler, pipe *export.Pipeline) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Name: name, Help: help}, labels)
	}
	m.exportErrors = counter("export_errors_total", "Failed export calls, by reason (the gRPC status code, or timeout, canceled, other).", "reason")
	m.events = counter("events_total", "Kernel records read, by probe (its span name) and kind (span: a finished span; abandoned: a frame gone without a return; entry, return: the halves some sources report).", "probe", "kind")
	m.attaches = counter("attaches_total", "Processes attached, by discovery rule.", "rule")
	m.detaches = counter("detaches_total", "Processes detached, by reason (exited, capture_ended, no_longer_matched, config_changed, agent_stopped).", "reason")
	m.attachErrors = counter("attach_errors_total", "Failed attaches, by reason.", "reason")
	m.reloads = counter("config_reloads_total", "Configuration reloads, by result (applied, refused).", "result")
	m.scans = prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "discovery_scans_total",
		Help: "Walks of /proc by discovery."})
	m.checks = prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "discovery_checks_total",
		Help: "Checks of the processes that executed a program (discovery woken by execs), without walking /proc."})
	m.execs = prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "discovery_execs_total",
		Help: "Program executions the kernel reported to discovery (each may wake a scan)."})
	m.lostEvents = prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "ringbuf_lost_events_total",
		Help: "Events the kernel could not deliver because the ring buffer was full."})
	m.attached = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "processes_attached",
		Help: "Processes currently attached."})
	stat := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: metricsNamespace, Name: name, Help: help}, f)
	}
	ex := func(f func(export.Stats) uint64) func() float64 {
		return func() float64 { return float64(f(pipe.Stats())) }
	}
	as := func(f func(spans.AssemblerStats) uint64) func() float64 {
		return func() float64 { return float64(f(asm.Stats())) }
	}
	m.reg.MustRegister(m.exportErrors, m.events, m.attaches, m.detaches, m.attachErrors, m.reloads, m.scans, m.checks, m.execs, m.lostEvents, m.attached,
		stat("spans_exported_total", "Spans accepted by the exporter.", ex(func(s export.Stats) uint64 { return s.Exported })),
		stat("spans_export_failed_total", "Spans in export calls that failed.", ex(func(s export.Stats) uint64 { return s.Failed })),
		stat("export_queue_dropped_total", "Spans dropped because the export queue was full.", ex(func(s export.Stats) uint64 { return s.Dropped })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "export_queue_length",
			Help: "Spans queued for export or in an export call."}, ex(func(s export.Stats) uint64 { return s.Queued })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "export_queue_capacity",
			Help: "The export queue's bound (routerscope.export.queue_size)."}, func() float64 { return float64(pipe.QueueSize()) }),
		stat("spans_finished_total", "Spans assembled, including those ended by the agent.", as(func(s spans.AssemblerStats) uint64 { return s.Finished })),
		newUnfinishedCollector(asm),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// unfinishedCollector exposes the spans the agent ended because their
// return never came, by reason.
type unfinishedCollector struct {
	asm  *spans.Assembler
	desc *prometheus.Desc
}

func newUnfinishedCollector(asm *spans.Assembler) *unfinishedCollector {
	return &unfinishedCollector{asm: asm, desc: prometheus.NewDesc(metricsNamespace+"_spans_unfinished_total",
		"Spans ended by the agent rather than by their return event, by reason (expired: return lost; process_exited; detached; abandoned: frame unwound by a panic; agent_stopped).",
		[]string{"reason"}, nil)}
}

func (c *unfinishedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *unfinishedCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.asm.Stats()
	for reason, v := range map[string]uint64{"expired": s.Expired, "process_exited": s.ProcessExited,
		"detached": s.Detached, "abandoned": s.Abandoned, "agent_stopped": s.Stopped} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(v), reason)
	}
}

// exportErrorReason names an export error for the reason label: a small,
// fixed set of values, never the error text.
func exportErrorReason(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return strings.ToLower(st.Code().String())
	}
	return "other"
}

// serveHTTP serves /metrics, /healthz and /readyz on ln, and with pprof
// the Go profiles under /debug/pprof/ (see Metrics.Pprof); the returned
// function stops the server and waits for it.
func (m *metrics) serveHTTP(ln net.Listener, pprof bool) func() {
	mux := http.NewServeMux()
	if pprof {
		servePprof(mux)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		// The process answers: that is all liveness means; a stuck export
		// or no target must not get the agent restarted.
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !m.ready.Load() {
			why := "a matching process is not attached, or the last export failed"
			if p := m.notReady.Load(); p != nil {
				why = *p
			}
			http.Error(w, "not ready: "+why+"\n", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // returns when Shutdown closes the listener
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
	}
}
