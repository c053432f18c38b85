package main

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/routerscope/routerscope/internal/testenv"
)

// TestMeasureFloor attaches the no-op program at each kind of instruction
// of the fixture and reads the timings back; it checks the mechanics (the
// fixture answers, every attach works), not the speed.
func TestMeasureFloor(t *testing.T) {
	testenv.RequireRoot(t, "attaching uprobes")
	bin := testenv.GoBuild(t, testenv.Build{Pkg: "./testdata/floor", Out: filepath.Join(t.TempDir(), "floor")})
	fl, err := measureFloor(bin, 2000, 1)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]float64{"baseline": fl.BaselineNs, "emulated": fl.EmulatedNs, "stepped": fl.SteppedNs, "ret": fl.RetNs} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Errorf("%s = %v", name, v)
		}
	}
	if fl.BaselineNs <= 0 || fl.Calls != 2000 || fl.Rounds != 1 {
		t.Errorf("floor %+v", fl)
	}
	if _, err := measureFloor(filepath.Join(t.TempDir(), "missing"), 10, 1); err == nil {
		t.Error("a missing fixture gave no error")
	}
}

// TestCaptureRuns checks that programs loaded before the given ID are not
// counted.
func TestCaptureRuns(t *testing.T) {
	testenv.RequireRoot(t, "listing eBPF programs")
	r, err := captureRuns(lastProgID())
	if err != nil {
		t.Fatal(err)
	}
	if r.Runs != 0 || r.Runtime != 0 {
		t.Errorf("programs loaded after the last ID ran %+v", r)
	}
}
