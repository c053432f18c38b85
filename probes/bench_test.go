package probes

import (
	"errors"
	"os"
	"testing"
)

// benchBinary is the fixture, or the binary named by
// ROUTERSCOPE_BENCH_BINARY (to measure a large program; the fixture spec's
// symbols must not be required then, so only opening and DWARF are timed).
func benchBinary(b *testing.B) (string, bool) {
	if p := os.Getenv("ROUTERSCOPE_BENCH_BINARY"); p != "" {
		return p, false
	}
	return fixtureBinary(b, variantFull), true
}

// BenchmarkOpenResolve times what the agent does per target: open the
// binary, load DWARF, resolve the fixture spec.
func BenchmarkOpenResolve(b *testing.B) {
	path, isFixture := benchBinary(b)
	spec, err := ParseSpec([]byte(fixtureSpec), "fixture.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		bin, err := OpenBinary(path)
		if err != nil {
			b.Fatal(err)
		}
		if isFixture {
			if _, err := Resolve(bin, spec); err != nil {
				b.Fatal(err)
			}
		} else if _, err := bin.dwarfInfo(); err != nil {
			b.Fatal(err)
		}
		bin.Close()
	}
}

// BenchmarkSymbolSuggestions times the not-found path, which compares the
// name with every function of the binary.
func BenchmarkSymbolSuggestions(b *testing.B) {
	path, _ := benchBinary(b)
	bin, err := OpenBinary(path)
	if err != nil {
		b.Fatal(err)
	}
	defer bin.Close()
	b.Logf("%d functions", len(bin.funcs))
	for b.Loop() {
		if _, err := bin.Function("main.(*Routr).clasify"); !errors.Is(err, ErrSymbolNotFound) {
			b.Fatal(err)
		}
	}
}
