package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
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

// CopyExecutable copies the program at src (e.g. /bin/sleep) to dst,
// creating dst's directory, so a test can run a process whose executable
// path it chooses (discovery rules select processes by it). It returns dst.
func CopyExecutable(t testing.TB, src, dst string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("read %s: %v", src, err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatalf("copy %s to %s: %v", src, dst, err)
	}
	return dst
}
