package readlimit

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	if data, err := File(p, 10); err != nil || string(data) != "0123456789" {
		t.Fatalf("at the limit: %q %v", data, err)
	}
	if _, err := File(p, 9); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("past the limit: %v", err)
	}
	if _, err := File(filepath.Join(t.TempDir(), "none"), 9); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
}

// TestEndlessFile: /dev/zero never ends; the read stops at the limit.
func TestEndlessFile(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Fatalf("the test reads /dev/zero as an endless file: %v", err)
	}
	if _, err := File("/dev/zero", 1<<20); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("/dev/zero: %v", err)
	}
	data, err := Prefix("/dev/zero", 4096)
	if err != nil || len(data) != 4096 {
		t.Fatalf("prefix of /dev/zero: %d bytes, %v", len(data), err)
	}
}
