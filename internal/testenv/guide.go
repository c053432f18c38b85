package testenv

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// GuideExample returns one of the tracing guide's observability.tracing
// examples, copied exactly into config/examples/guide (name is the file,
// e.g. "development.yaml"), for tests that load what the guide tells
// users to write.
func GuideExample(t testing.TB, name string) []byte {
	t.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("locate the repository: no caller information")
	}
	data, err := os.ReadFile(filepath.Join(filepath.Dir(self), "..", "..", "config", "examples", "guide", name))
	if err != nil {
		t.Fatalf("read the guide's example: %v", err)
	}
	return data
}
