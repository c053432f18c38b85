package agent

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/routerscope/routerscope/probes"
)

// TestKernelCollector: every kernel counter of a CaptureStats becomes a
// series with its process and probe, and nothing is collected before the
// capture is loaded.
func TestKernelCollector(t *testing.T) {
	loaded := false
	stats := probes.CaptureStats{
		Probes: []probes.ProcessProbeStats{
			{PID: 10, ProbeStats: probes.ProbeStats{Span: "semantic_router.request", Entries: 5, Returns: 4, Abandoned: 1, Emitted: 5, Overflow: 2, Unmatched: 3, Skipped: 6}},
			{PID: 11, ProbeStats: probes.ProbeStats{Span: "semantic_router.request", Entries: 7}},
		},
		Lost:        map[int]uint64{10: 9},
		Propagation: map[int]probes.PropagationStats{10: {Extracted: 2, Invalid: 1, Duplicates: 1}},
		Sockets:     probes.PropagationStats{Injected: 3, PushErrors: 1},
		Maps: []probes.MapStats{
			{MapMemory: probes.MapMemory{Name: "stacks", MaxEntries: 8192, Bytes: 1 << 20}, Entries: 8192},
			{MapMemory: probes.MapMemory{Name: "events", MaxEntries: 4 << 20, Bytes: 4 << 20}, Entries: -1},
		},
		Unrouted: 4,
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newKernelCollector(func() (probes.CaptureStats, bool) { return stats, loaded }))
	fams, err := reg.Gather()
	if err != nil || len(fams) != 0 {
		t.Fatalf("before load: %d families, %v", len(fams), err)
	}
	loaded = true
	fams, err = reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.Metric {
			got[f.GetName()+labels(m)] = value(m)
		}
	}
	want := map[string]float64{
		"routerscope_kernel_spans_opened_total{pid=10,probe=semantic_router.request}":      5,
		"routerscope_kernel_spans_opened_total{pid=11,probe=semantic_router.request}":      7,
		"routerscope_kernel_spans_closed_total{pid=10,probe=semantic_router.request}":      4,
		"routerscope_kernel_spans_abandoned_total{pid=10,probe=semantic_router.request}":   1,
		"routerscope_kernel_records_emitted_total{pid=10,probe=semantic_router.request}":   5,
		"routerscope_kernel_spans_overflow_total{pid=10,probe=semantic_router.request}":    2,
		"routerscope_kernel_returns_unmatched_total{pid=10,probe=semantic_router.request}": 3,
		"routerscope_kernel_spans_skipped_total{pid=10,probe=semantic_router.request}":     6,
		"routerscope_kernel_records_lost_total{pid=10}":                                    9,
		"routerscope_kernel_records_lost_total{pid=11}":                                    0,
		"routerscope_kernel_propagation_total{event=extracted,pid=10}":                     2,
		"routerscope_kernel_propagation_total{event=invalid,pid=10}":                       1,
		"routerscope_kernel_propagation_total{event=duplicate,pid=10}":                     1,
		"routerscope_kernel_injector_total{event=injected}":                                3,
		"routerscope_kernel_injector_total{event=push_error}":                              1,
		"routerscope_kernel_map_capacity{map=stacks}":                                      8192,
		"routerscope_kernel_map_entries{map=stacks}":                                       8192,
		"routerscope_kernel_map_memory_bytes{map=events}":                                  4 << 20,
		"routerscope_kernel_records_unrouted_total":                                        4,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if _, ok := got["routerscope_kernel_map_entries{map=events}"]; ok {
		t.Error("entries reported for the ring buffer, which has none")
	}
}

func labels(m *dto.Metric) string {
	if len(m.Label) == 0 {
		return ""
	}
	var parts []string
	for _, l := range m.Label {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func value(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
