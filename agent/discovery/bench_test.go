package discovery

import (
	"testing"

	"github.com/routerscope/routerscope/agent/config"
)

// BenchmarkScanProc measures one discovery scan of this machine's /proc
// with a typical rule (executable glob plus command line): the cost paid
// every discovery interval.
func BenchmarkScanProc(b *testing.B) {
	d := compiled(b, config.Discovery{
		Rules: []config.Rule{{Name: "router", Selector: config.Selector{Executable: "/usr/local/bin/router*", Cmdline: "--config"}}}})
	pids, _ := listPIDs("/proc")
	b.ReportMetric(float64(len(pids)), "processes")
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			if _, err := Scan("/proc", d.Rules, nil, nil, 0, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	// What the agent pays per interval: processes seen before are only
	// checked for restarts.
	b.Run("cached", func(b *testing.B) {
		cache := Cache{}
		for b.Loop() {
			if _, err := Scan("/proc", d.Rules, nil, nil, 0, cache); err != nil {
				b.Fatal(err)
			}
		}
	})
}
