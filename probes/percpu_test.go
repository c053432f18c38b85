package probes

import (
	"reflect"
	"testing"

	"github.com/routerscope/routerscope/bpf"
)

// TestSumPerCPU sums two CPUs' copies of each counters struct read per CPU
// and checks every field: a field that is not a uint64 would not be added.
func TestSumPerCPU(t *testing.T) {
	checkSumPerCPU[bpf.CaptureProbeCounters](t)
	checkSumPerCPU[bpf.CapturePropagationCounters](t)
	checkSumPerCPU[bpf.InjectInjectCounters](t)
}

func checkSumPerCPU[T any](t *testing.T) {
	t.Helper()
	cpus := make([]T, 2)
	typ := reflect.TypeFor[T]()
	for cpu := range cpus {
		v := reflect.ValueOf(&cpus[cpu]).Elem()
		for f := range typ.NumField() {
			if typ.Field(f).Name == "_" {
				continue
			}
			if typ.Field(f).Type.Kind() != reflect.Uint64 {
				t.Fatalf("%s.%s is %s, not a uint64 counter", typ, typ.Field(f).Name, typ.Field(f).Type)
			}
			v.Field(f).SetUint(uint64((cpu*100 + 1) * (f + 1)))
		}
	}
	sum := reflect.ValueOf(sumPerCPU(cpus))
	for f := range typ.NumField() {
		if typ.Field(f).Name == "_" {
			continue
		}
		if got, want := sum.Field(f).Uint(), uint64(102*(f+1)); got != want {
			t.Errorf("%s.%s summed to %d, want %d", typ, typ.Field(f).Name, got, want)
		}
	}
}
