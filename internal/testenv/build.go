package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Build is one `go build` of a program a test runs (a fixture under
// testdata/, or one of the project's commands).
type Build struct {
	// Pkg is the package to build, e.g. "./testdata/traced".
	Pkg string
	// Out is the file to write.
	Out string
	// Dir is the directory to build from; empty means the test's own
	// package directory.
	Dir string
	// Env is added to the test's environment (CGO_ENABLED=0,
	// GOTOOLCHAIN=..., GOARCH=...).
	Env []string
	// Flags are more go build flags (-ldflags=..., -trimpath).
	Flags []string
}

// GoBuild builds b and returns its output file, failing the test with the
// go tool's output when the build fails.
func GoBuild(t testing.TB, b Build) string {
	t.Helper()
	args := append([]string{"build", "-o", b.Out}, b.Flags...)
	cmd := exec.Command("go", append(args, b.Pkg)...)
	cmd.Dir = b.Dir
	cmd.Env = append(os.Environ(), b.Env...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s (env %v, flags %v): %v\n%s", b.Pkg, b.Env, b.Flags, err, msg)
	}
	return b.Out
}
