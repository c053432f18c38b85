package discovery

import "github.com/routerscope/routerscope/internal/readlimit"

// Bounds on the /proc entries of other processes the agent reads. They are
// that process's to fill: a command line or environment can be megabytes
// (the kernel allows up to a quarter of the stack limit), and only their
// head is needed: the --config flag, CONFIG_PATH, a few POD_* variables,
// the start time. Reads stop at the bound; what lies past it is ignored.
const (
	maxProcStat    = 4 << 10   // /proc/PID/stat: one line, comm is at most 16 bytes
	maxProcComm    = 256       // /proc/PID/comm: 16 bytes
	maxProcCmdline = 64 << 10  // /proc/PID/cmdline, matched by rules
	maxProcEnviron = 256 << 10 // /proc/PID/environ
	maxProcCgroup  = 64 << 10  // /proc/PID/cgroup
	maxSmallFile   = 4 << 10   // the service account's namespace file
)

// readProc reads at most max bytes of a /proc entry (or of a file inside
// another process's root).
func readProc(path string, max int64) ([]byte, error) { return readlimit.Prefix(path, max) }
