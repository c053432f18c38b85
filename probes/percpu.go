package probes

import "reflect"

// sumPerCPU adds up a per-CPU map value: the kernel keeps one copy of a
// counters struct per CPU, and user space reports their field-by-field
// sum. T is one of the generated counters structs, all of whose fields are
// uint64 (TestSumPerCPU checks each).
func sumPerCPU[T any](perCPU []T) T {
	var sum T
	addPerCPU(&sum, perCPU)
	return sum
}

// addPerCPU adds the per-CPU copies of a counters struct into *sum, field
// by field. Fields other than uint64 (the generated structs' blank layout
// marker) are left alone.
func addPerCPU[T any](sum *T, perCPU []T) {
	out := reflect.ValueOf(sum).Elem()
	for i := range perCPU {
		in := reflect.ValueOf(&perCPU[i]).Elem()
		for f := range out.NumField() {
			if field := out.Field(f); field.Kind() == reflect.Uint64 && field.CanSet() {
				field.SetUint(field.Uint() + in.Field(f).Uint())
			}
		}
	}
}
