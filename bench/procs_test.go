package main

import (
	"os"
	"testing"
	"time"
)

func TestParseStopped(t *testing.T) {
	log := []byte(`{"level":"info","msg":"attached","pid":12}
not json at all
{"level":"info","msg":"stopped","spans_finished":90,"returns_without_entry":0,"spans_expired":1,"lost_events":4,"spans_exported":80,"spans_export_failed":2,"spans_dropped_queue_full":7}
`)
	c, ok := parseStopped(log)
	if !ok {
		t.Fatal("stopped line not found")
	}
	want := agentCounters{Finished: 90, Exported: 80, ExportFailed: 2, Dropped: 7, Lost: 4, Expired: 1}
	if c != want {
		t.Fatalf("counters %+v, want %+v", c, want)
	}
	if _, ok := parseStopped([]byte(`{"msg":"attached"}`)); ok {
		t.Fatal("found a stopped line in a log without one")
	}
	var sum agentCounters
	sum.add(want)
	sum.add(want)
	if sum.Dropped != 14 || sum.Exported != 160 || sum.Lost != 8 {
		t.Fatalf("add: %+v", sum)
	}
}

func TestProcFigures(t *testing.T) {
	// Our own process: its CPU time and peak RSS must be positive.
	if _, err := cpuTime(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	rss, err := peakRSS(os.Getpid())
	if err != nil || rss == 0 {
		t.Fatalf("peak RSS %d, %v", rss, err)
	}
	ns, err := threadsCPU(os.Getpid())
	if err != nil || ns <= 0 {
		t.Fatalf("threadsCPU = %v, %v", ns, err)
	}
	if _, err := threadsCPU(-1); err == nil {
		t.Fatal("threadsCPU of pid -1 gave no error")
	}
	if _, err := cpuTime(-1); err == nil {
		t.Fatal("cpuTime of pid -1 gave no error")
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestParseDetach(t *testing.T) {
	log := []byte("{\"msg\":\"attached\"}\n{\"msg\":\"detached\",\"detach_seconds\":4.25}\n")
	if got := parseDetach(log); got != 4250*time.Millisecond {
		t.Fatalf("parseDetach = %v, want 4.25s", got)
	}
	if got := parseDetach([]byte("{}")); got != 0 {
		t.Fatalf("parseDetach without the line = %v", got)
	}
}
