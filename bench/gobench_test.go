package main

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestGoBenchmarksExist: the hot-path benchmarks the report runs are in
// goBenchPkg under the names goBenchmarks selects (a package move or a
// rename otherwise fails `make bench` only at its very end).
func TestGoBenchmarksExist(t *testing.T) {
	out, err := exec.Command("go", "test", "-list", "^Benchmark", "../"+strings.TrimPrefix(goBenchPkg, "./")).CombinedOutput()
	if err != nil {
		t.Fatalf("go test -list %s: %v\n%s", goBenchPkg, err, out)
	}
	re := regexp.MustCompile(goBenchmarks)
	found := 0
	for _, name := range strings.Fields(string(out)) {
		if re.MatchString(name) {
			found++
		}
	}
	if want := strings.Count(goBenchmarks, "|") + 1; found != want {
		t.Fatalf("%d of the %d benchmarks %s in %s:\n%s", found, want, goBenchmarks, goBenchPkg, out)
	}
}
