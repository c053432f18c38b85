package discovery

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/routerscope/routerscope/probes"
)

// This file reads the facts discovery needs from a proc file system. The
// proc root is a parameter, so tests point it at fake trees.

// Process is what discovery knows of one running process.
type Process struct {
	PID int
	// StartTime is the process's start in clock ticks since boot (field 22
	// of /proc/PID/stat): with PID it names one process, so a restarted
	// process that got the same PID is still a new process.
	StartTime uint64
	// Exe is the target of /proc/PID/exe: the executable's path inside the
	// process's own mount namespace (a container's path for a containerised
	// process). Empty for kernel threads.
	Exe string
	// Comm is the process name (/proc/PID/comm, at most 15 bytes).
	Comm string
	// Cmdline is the argument vector.
	Cmdline []string

	procRoot string
}

// Key identifies a process across PID reuse: its PID and its start time
// (0 when it could not be read).
type Key struct {
	PID   int
	Start uint64
}

// Key is the process's identity.
func (p Process) Key() Key { return Key{PID: p.PID, Start: p.StartTime} }

// deletedSuffix marks an executable deleted or replaced since the start.
const deletedSuffix = probes.DeletedSuffix

// NewProcess is a process known only by its PID, for a target the agent
// cannot read (another user's, or a test's made-up PID): the attacher has
// the final word on it.
func NewProcess(procRoot string, pid int) Process { return Process{PID: pid, procRoot: procRoot} }

// HostExecutable is a path to the process's executable that opens from the
// agent's own mount namespace (probes.RootedExe): through /proc/PID/root,
// which reaches into a container's file system (the agent runs with
// hostPID, so it sees /proc of every process on the node), or /proc/PID/exe
// for a deleted or replaced file.
func (p Process) HostExecutable() string { return probes.RootedExe(p.procRoot, p.PID, p.Exe) }

// listPIDs returns the numeric entries of procRoot, ascending.
func listPIDs(procRoot string) ([]int, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("list processes in %s: %w", procRoot, err)
	}
	pids := make([]int, 0, len(entries))
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids, nil
}

// ReadProcess reads one process's identity, name, executable and command
// line. A process that is gone, or a kernel thread (no executable), yields
// an error; discovery skips it.
func ReadProcess(procRoot string, pid int) (Process, error) {
	start, err := ReadStartTime(procRoot, pid)
	if err != nil {
		return Process{PID: pid, procRoot: procRoot}, err
	}
	return readProcessRest(procRoot, pid, start)
}

// ReadStartTime reads a process's start time: the one read a scan makes
// of a process it has seen before.
func ReadStartTime(procRoot string, pid int) (uint64, error) {
	stat, err := readProc(filepath.Join(procRoot, strconv.Itoa(pid), "stat"), maxProcStat)
	if err != nil {
		return 0, fmt.Errorf("read process %d: %w", pid, err)
	}
	start, err := parseStartTime(stat)
	if err != nil {
		return 0, fmt.Errorf("read process %d: %w", pid, err)
	}
	return start, nil
}

// readProcessRest reads what ReadProcess reads after the start time.
func readProcessRest(procRoot string, pid int, start uint64) (Process, error) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	p := Process{PID: pid, StartTime: start, procRoot: procRoot}
	var err error
	if p.Exe, err = os.Readlink(filepath.Join(dir, "exe")); err != nil {
		return p, fmt.Errorf("read process %d executable: %w", pid, err)
	}
	comm, err := readProc(filepath.Join(dir, "comm"), maxProcComm)
	if err != nil {
		return p, fmt.Errorf("read process %d name: %w", pid, err)
	}
	p.Comm = strings.TrimSuffix(string(comm), "\n")
	cmd, err := readProc(filepath.Join(dir, "cmdline"), maxProcCmdline)
	if err != nil {
		return p, fmt.Errorf("read process %d command line: %w", pid, err)
	}
	if cmd = bytes.TrimSuffix(cmd, []byte{0}); len(cmd) > 0 {
		p.Cmdline = strings.Split(string(cmd), "\x00")
	}
	return p, nil
}

var errBadStat = errors.New("malformed stat line")

// parseStartTime reads field 22 of a stat line. The name (field 2) is in
// parentheses and may itself hold spaces and parentheses, so fields are
// counted after the last ')'.
func parseStartTime(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errBadStat
	}
	// After ')' come fields 3 onwards; starttime is field 22, index 19.
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 {
		return 0, errBadStat
	}
	v, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: starttime %q", errBadStat, fields[19])
	}
	return v, nil
}

// tcpListen is the state column value of a listening socket in
// /proc/net/tcp (TCP_LISTEN in the kernel's enum).
const tcpListen = "0A"

// listeningPorts returns the TCP ports the process listens on: the
// listening sockets of its network namespace (/proc/PID/net/tcp and tcp6,
// which show the namespace of that process, so container ports are seen
// as the container sees them) whose inodes are among its open file
// descriptors. tables caches the namespaces' listening sockets for one
// scan (many processes share a namespace); it may be nil.
func listeningPorts(procRoot string, pid int, tables map[string]map[string]int) (map[int]bool, error) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	ns, err := os.Readlink(filepath.Join(dir, "ns", "net"))
	if err != nil {
		ns = dir // no namespace link (a fake tree): no sharing
	}
	byInode, ok := tables[ns]
	if !ok {
		byInode = map[string]int{}
		for _, f := range []string{"tcp", "tcp6"} {
			if err := readListening(filepath.Join(dir, "net", f), byInode); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
		}
		if tables != nil {
			tables[ns] = byInode
		}
	}
	ports := map[int]bool{}
	if len(byInode) == 0 {
		return ports, nil
	}
	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return nil, fmt.Errorf("list open files of process %d: %w", pid, err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
		if err != nil || !strings.HasPrefix(target, "socket:[") {
			continue
		}
		inode := strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")
		if port, ok := byInode[inode]; ok {
			ports[port] = true
		}
	}
	return ports, nil
}

// readListening adds the listening sockets of one /proc/net/tcp table to
// byInode (inode -> local port). Columns: sl local_address rem_address st
// tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...; the local
// address is HEX_IP:HEX_PORT.
func readListening(path string, byInode map[string]int) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read sockets: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		cols := strings.Fields(sc.Text())
		if len(cols) < 10 || cols[3] != tcpListen {
			continue
		}
		i := strings.LastIndexByte(cols[1], ':')
		if i < 0 {
			continue
		}
		port, err := strconv.ParseUint(cols[1][i+1:], 16, 16)
		if err != nil {
			continue
		}
		byInode[cols[9]] = int(port)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read sockets %s: %w", path, err)
	}
	return nil
}
