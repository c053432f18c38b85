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
// path is /proc/PID/exe itself, which still opens the running image (and
// attaching uprobes through it reaches the same inode).
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
	running, err := os.Stat(exe)
	if err != nil {
		return "", fmt.Errorf("resolve executable of pid %d: stat %s: %w", pid, exe, err)
	}
	// The named file must still be the running image: after a deploy
	// replaced or deleted it ("/path (deleted)"), only the exe link opens
	// the code that runs.
	rooted := filepath.Join(proc, "root", target)
	if fi, err := os.Stat(rooted); err == nil && os.SameFile(fi, running) {
		return rooted, nil
	}
	return exe, nil
}
