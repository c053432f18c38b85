package discovery

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuildID(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	id, err := BuildID(self)
	if err != nil || !strings.HasPrefix(id, "go:") || len(id) < 10 {
		t.Fatalf("Go binary: %q %v", id, err)
	}
	// A copy is the same build; a changed file is not.
	dir := t.TempDir()
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "copy")
	if err := os.WriteFile(cp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if again, _ := BuildID(cp); again != id {
		t.Fatalf("copy: %q, want %q", again, id)
	}
	if sleep, err := BuildID("/bin/sleep"); err != nil || !strings.HasPrefix(sleep, "gnu:") {
		// Debian's coreutils are linked with a GNU build id.
		t.Errorf("/bin/sleep: %q %v", sleep, err)
	}
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h1, err := BuildID(script)
	if err != nil || !strings.HasPrefix(h1, "sha256:") {
		t.Fatalf("not ELF: %q %v", h1, err)
	}
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if h2, _ := BuildID(script); h2 == h1 {
		t.Fatal("changed file kept its hash")
	}
	if _, err := BuildID(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
}
