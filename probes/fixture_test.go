package probes

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf/rlimit"

	"github.com/routerscope/routerscope/internal/testenv"
)

// fixtureVariant is one way of building the fixture program.
type fixtureVariant string

const (
	variantFull     fixtureVariant = "full"     // symbols and DWARF
	variantNoDWARF  fixtureVariant = "nodwarf"  // -ldflags=-w
	variantStripped fixtureVariant = "stripped" // -ldflags='-s -w': pclntab only
)

var variantFlags = map[fixtureVariant]string{
	variantFull:     "",
	variantNoDWARF:  "-w",
	variantStripped: "-s -w",
}

// fixtureDir holds the fixture builds of this test run, set by TestMain.
var fixtureDir string

func TestMain(m *testing.M) {
	// What a main does before NewCapture on kernels before 5.11; a
	// non-root run has nothing to load and ignores the error.
	_ = rlimit.RemoveMemlock()
	dir, err := os.MkdirTemp("", "probes-fixture-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fixtureDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fixtureBinary builds the fixture once per variant and test run.
func fixtureBinary(t testing.TB, v fixtureVariant) string {
	t.Helper()
	return fixtureBuild(t, string(v), testenv.Build{Pkg: "./testdata/fixture", Flags: []string{"-ldflags=" + variantFlags[v]},
		Env: []string{"CGO_ENABLED=0", "GOARCH=amd64", "GOOS=linux"}})
}

// fixtureBuild builds b into fixtureDir/name once per test run (b.Out is
// set here), and returns the file.
func fixtureBuild(t testing.TB, name string, b testenv.Build) string {
	t.Helper()
	b.Out = filepath.Join(fixtureDir, name)
	if _, err := os.Stat(b.Out); err == nil {
		return b.Out
	}
	return testenv.GoBuild(t, b)
}

// openFixture opens a fixture build, closed when the test ends.
func openFixture(t *testing.T, v fixtureVariant) *Binary {
	t.Helper()
	b, err := OpenBinary(fixtureBinary(t, v))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestFixtureRuns drives the fixture program through every scenario, so
// the functions the tests resolve are known to run (the root-gated tests
// attach to the same program).
func TestFixtureRuns(t *testing.T) {
	scenarios := []string{"greet", "scale", "handle", "handle-error", "classify", "classify-error", "label", "many",
		"spill", "allowed", "status", "count", "add", "unused", "twice", "generic", "yaml", "fib", "leaf", "big", "huge"}
	cmd := exec.Command(fixtureBinary(t, variantFull))
	cmd.Stdin = strings.NewReader(strings.Join(append(scenarios, "nope", "exit"), "\n") + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("fixture: %v\n%s", err, out)
	}
	var want []string
	for _, s := range scenarios {
		want = append(want, "ok "+s)
	}
	want = append(want, `error unknown scenario "nope"`)
	if got := strings.Split(strings.TrimSpace(string(out)), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("fixture output:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
}
