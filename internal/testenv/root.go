package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// vmlinuxBTF is where the kernel exposes its own BTF; the capture
// programs are CO-RE and cannot load without it.
const vmlinuxBTF = "/sys/kernel/btf/vmlinux"

// RequireRoot skips a test that needs root when the tests do not run as
// root, naming what needs it (what, e.g. "attaching uprobes"), or when
// -short asks for the pure-Go tests only. As root it never skips: CI runs
// as root, and a test it gates must run there.
func RequireRoot(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("%s: skipped in -short mode (pure-Go tests only)", what)
	}
	if uid := os.Geteuid(); uid != 0 {
		t.Skipf("%s needs root, and the tests run as uid %d: run them as root (CI does)", what, uid)
	}
}

// RequireBPF is RequireRoot for a test that loads eBPF programs: as root
// it also needs the kernel's BTF, and a kernel without it fails the test
// rather than skipping it, since nothing of the agent could run there.
func RequireBPF(t testing.TB, what string) {
	t.Helper()
	RequireRoot(t, what)
	if _, err := os.Stat(vmlinuxBTF); err != nil {
		t.Fatalf("%s needs the kernel's BTF: %v", what, err)
	}
}

// RequireTool returns the path of a command a test runs (llvm-objdump,
// bpftool, runc). `make prereqs` installs them all and `make test` runs it
// first, so as root (CI) a missing one fails the test; elsewhere, or with
// -short, it skips naming the Debian package (pkg) to install.
func RequireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if testing.Short() || os.Geteuid() != 0 {
		t.Skipf("%s not installed (apt-get install %s, or make prereqs)", name, pkg)
	}
	t.Fatalf("%s not installed: apt-get install %s (make prereqs installs it): %v", name, pkg, err)
	return ""
}
