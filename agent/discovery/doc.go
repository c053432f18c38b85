// Package discovery is where a process is discovered: it scans a proc file
// system (scan.go, procfs.go) for the processes the config's discovery
// rules select and do not exclude, matching executable and name globs,
// command-line patterns, listening ports and PIDs; finds the processes of
// a binary target (discover.go); reads what the agent needs of a process
// to trace it: its identity across PID reuse (Key), its build id, its
// resource attributes (procresource.go: process, host, container, k8s.*)
// and the config file it was started with (targetconfig.go).
//
// A scan re-reads only the start time and executable link of processes
// it has seen before (Cache): about 1.2 ms for 90 processes here
// (BenchmarkScanProc). When it scans is the agent's decision (agent/doc.go,
// agent/execwake.go): woken by execs where the kernel reports them, every
// interval otherwise.
//
// Every /proc entry belongs to another program and is read up to a bound
// (procread.go). The package only reads: it attaches nothing, starts no
// goroutine and never logs; the agent decides what to do with a match.
// It imports agent/config (the rule types) and no other agent package.
package discovery
