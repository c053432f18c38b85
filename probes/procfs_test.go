package probes

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/routerscope/routerscope/internal/testenv"
)

func TestExePathSelf(t *testing.T) {
	got, err := ExePath(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join("/proc", strconv.Itoa(os.Getpid()), "root", self)
	if got != want {
		t.Errorf("ExePath(self) = %q, want %q", got, want)
	}
	a, errA := os.Stat(got)
	b, errB := os.Stat(self)
	if errA != nil || errB != nil || !os.SameFile(a, b) {
		t.Errorf("ExePath(self) = %q is not the test binary (%v, %v)", got, errA, errB)
	}
}

func TestExePathGone(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatalf("run `true` to create a finished process: %v", err)
	}
	// The pid of a reaped child is free (reuse within this test is
	// unlikely but possible, so only the content is checked when it fails).
	_, err := ExePath(cmd.Process.Pid)
	if err == nil {
		// Only a pid that a new process took since may answer.
		if _, serr := os.Stat(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid))); serr != nil {
			t.Fatalf("ExePath(reaped pid %d) gave no error, and no process has that pid", cmd.Process.Pid)
		}
		t.Skipf("pid %d was reused", cmd.Process.Pid)
	}
	if !strings.Contains(err.Error(), "process is gone") {
		t.Errorf("ExePath(reaped) = %v, want 'process is gone'", err)
	}
	if _, err := ExePath(0); err == nil {
		t.Error("ExePath(0) succeeded")
	}
}

// startFixture runs a fixture copy at path until the test ends; the
// fixture waits on stdin.
func startFixture(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// TestExePathDeleted: a binary deleted (and replaced) after start is
// still reachable through /proc/PID/exe, and resolvable.
func TestExePathDeleted(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "fixture")
	data, err := os.ReadFile(fixtureBinary(t, variantFull))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := startFixture(t, bin)
	waitExe(t, cmd.Process.Pid, bin)
	// Replace the file as a deploy would: the name now is another inode.
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("new version"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := ExePath(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "exe"); got != want {
		t.Errorf("ExePath(deleted) = %q, want %q", got, want)
	}
	checkOpensFixture(t, got)
}

// TestExePathOtherMountNamespace runs the fixture from a tmpfs mounted only
// in a new mount namespace (as in a container): its path does not exist in
// ours, but ExePath reaches it through /proc/PID/root.
func TestExePathOtherMountNamespace(t *testing.T) {
	testenv.RequireRoot(t, "creating a mount namespace (unshare -m)")
	unshare := testenv.RequireTool(t, "unshare", "util-linux")
	fixture := fixtureBinary(t, variantFull)
	dir := t.TempDir() // exists in both namespaces; the tmpfs on it only in the child's
	script := `mount -t tmpfs routerscope-test "$1" && cp "$2" "$1/inside" && exec "$1/inside"`
	cmd := startFixture(t, unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh", dir, fixture)
	inside := filepath.Join(dir, "inside")
	pid := cmd.Process.Pid
	waitExe(t, pid, inside)
	if _, err := os.Stat(inside); !os.IsNotExist(err) {
		t.Fatalf("%s is visible outside the namespace (%v); the test setup is wrong", inside, err)
	}
	got, err := ExePath(pid)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join("/proc", strconv.Itoa(pid), "root", inside); got != want {
		t.Errorf("ExePath = %q, want %q", got, want)
	}
	checkOpensFixture(t, got)
}

// waitExe waits until process pid has exec'd the binary at path (the
// process may still be a shell or unshare right after Start).
func waitExe(t *testing.T, pid int, path string) {
	t.Helper()
	exe := filepath.Join("/proc", strconv.Itoa(pid), "exe")
	testenv.Eventually(t, fmt.Sprintf("process %d to run %s", pid, path), func() bool {
		target, err := os.Readlink(exe)
		return err == nil && strings.HasPrefix(target, path)
	})
}

// checkOpensFixture checks that path opens as the fixture (its main.Greet
// resolves).
func checkOpensFixture(t *testing.T, path string) {
	t.Helper()
	b, err := OpenBinary(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Function("main.Greet"); err != nil {
		t.Error(err)
	}
}
