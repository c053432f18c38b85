package discovery

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/routerscope/routerscope/agent/config"
)

// ErrNoProcess is returned when a binary target has no running process.
var ErrNoProcess = errors.New("no running process of the binary")

// FindProcesses returns the PIDs of the processes running the executable at
// path, in ascending order, by comparing each /proc/PID/exe with the file
// (same device and inode, so symlinks and hard links to it match). procRoot
// is normally "/proc". Processes that cannot be inspected (another user's,
// or gone meanwhile) are skipped.
func FindProcesses(procRoot, path string) ([]int, error) {
	want, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("find processes of %s: %w", path, err)
	}
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("find processes of %s: read %s: %w", path, procRoot, err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		fi, err := os.Stat(filepath.Join(procRoot, e.Name(), "exe"))
		if err != nil {
			continue
		}
		if os.SameFile(fi, want) {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids, nil
}

// ExpandTargets turns binary targets into one target per running process
// (keeping the binary path, so the attacher need not look it up again).
// Processes started later are not picked up: use discovery rules
// (routerscope.discovery) to follow new processes and restarts.
func ExpandTargets(procRoot string, targets []config.Target) ([]config.Target, error) {
	var out []config.Target
	for _, t := range targets {
		if t.Binary == "" || t.PID != 0 {
			out = append(out, t)
			continue
		}
		pids, err := FindProcesses(procRoot, t.Binary)
		if err != nil {
			return nil, err
		}
		if len(pids) == 0 {
			return nil, fmt.Errorf("%w: %s is not running (start it first, or pass --pid)", ErrNoProcess, t.Binary)
		}
		for _, pid := range pids {
			out = append(out, config.Target{PID: pid, Binary: t.Binary})
		}
	}
	return out, nil
}
