package probes

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// ExePath returns a path through which this process can open the
// executable of process pid. The link /proc/PID/exe names the file inside
// the target's mount namespace (a container's root), so the name is
// re-rooted under /proc/PID/root, which the kernel resolves in the target's
// namespace. When the binary was deleted or replaced since it started, the
// path is /proc/PID/exe itself, which still opens the running image.
func ExePath(pid int) (string, error) {
	if pid <= 0 {
		return "", fmt.Errorf("resolve executable of pid %d: not a process id", pid)
	}
	proc := filepath.Join("/proc", strconv.Itoa(pid))
	exe := filepath.Join(proc, "exe")
	target, err := os.Readlink(exe)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("resolve executable of pid %d: the process is gone: %w", pid, err)
		}
		if errors.Is(err, fs.ErrPermission) {
			return "", fmt.Errorf("resolve executable of pid %d: %w (tracing another user's process needs root or CAP_SYS_PTRACE)", pid, err)
		}
		return "", fmt.Errorf("resolve executable of pid %d: %w", pid, err)
	}
	rooted := filepath.Join(proc, "root", target)
	if fi, err := os.Stat(rooted); err == nil && fi.Mode().IsRegular() {
		return rooted, nil
	}
	// A deleted binary reads "/path (deleted)"; the exe link still opens it.
	if _, err := os.Stat(exe); err != nil {
		return "", fmt.Errorf("resolve executable of pid %d: open %s: %w", pid, exe, err)
	}
	return exe, nil
}
