package probes

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DeletedSuffix is what the kernel appends to /proc/PID/exe's target when
// the file was removed or replaced after the process started.
const DeletedSuffix = " (deleted)"

// RootedExe is the one place a process's executable is reached from this
// mount namespace: target, the file /proc/PID/exe names inside the
// process's own mount namespace (a container's root), re-rooted under
// procRoot/PID/root, which the kernel resolves in that namespace. A file
// deleted or replaced since the start (target ends in DeletedSuffix), or
// no target, is only reachable through procRoot/PID/exe itself, which
// still opens the running image.
func RootedExe(procRoot string, pid int, target string) string {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	if target == "" || strings.HasSuffix(target, DeletedSuffix) {
		return filepath.Join(dir, "exe")
	}
	return filepath.Join(dir, "root", target)
}

// ExePath returns a path through which this process can open the
// executable of process pid (see RootedExe), checked to be the running
// image: after a deploy replaced the named file, the path is /proc/PID/exe
// itself (and attaching uprobes through it reaches the same inode).
func ExePath(pid int) (string, error) {
	if pid <= 0 {
		return "", fmt.Errorf("resolve executable of pid %d: not a process id", pid)
	}
	exe := filepath.Join("/proc", strconv.Itoa(pid), "exe")
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
	rooted := RootedExe("/proc", pid, target)
	if fi, err := os.Stat(rooted); err == nil && os.SameFile(fi, running) {
		return rooted, nil
	}
	return exe, nil
}
