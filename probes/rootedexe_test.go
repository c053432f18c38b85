package probes

import (
	"path/filepath"
	"testing"
)

// TestRootedExe: a live executable is reached through the process's root
// under the given proc root; a deleted one, or none, through its exe link.
func TestRootedExe(t *testing.T) {
	for _, c := range []struct{ target, want string }{
		{"/app/router", filepath.Join("/fake", "42", "root", "app", "router")},
		{"/app/router" + DeletedSuffix, filepath.Join("/fake", "42", "exe")},
		{"", filepath.Join("/fake", "42", "exe")},
	} {
		if got := RootedExe("/fake", 42, c.target); got != c.want {
			t.Errorf("RootedExe(%q) = %q, want %q", c.target, got, c.want)
		}
	}
}
