package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// progRun is the cumulative run time and count of kernel programs.
type progRun struct {
	Runtime time.Duration
	Runs    uint64
}

func (a progRun) sub(b progRun) progRun {
	return progRun{Runtime: a.Runtime - b.Runtime, Runs: a.Runs - b.Runs}
}

// enableBPFStats makes the kernel time every eBPF program run (the
// kernel.bpf_stats_enabled switch, held while the returned Closer is
// open), so the harness can split the agent's added latency into the
// uprobe traps and its programs' own work. It costs two clock reads per
// run, tens of nanoseconds next to microseconds of trap.
func enableBPFStats() (io.Closer, error) {
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enable eBPF run-time statistics: %w", err)
	}
	return c, nil
}

// lastProgID is the highest eBPF program ID now loaded: programs loaded
// later have higher IDs.
func lastProgID() ebpf.ProgramID {
	var last ebpf.ProgramID
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			return last
		}
		id, last = next, next
	}
}

// captureRuns sums the run statistics of the agent's programs in the
// traced process: the capture engine's uprobe programs (bpf/capture.c:
// uprobe_entry, uprobe_return, uprobe_newproc1*, the propagation uprobes)
// and the injector's socket programs (bpf/inject.c: sk_msg in each send of
// the process's client sockets, sock_ops on their connects), loaded after
// the program ID since. Another process loading the same programs at the
// same time would be counted too.
func captureRuns(since ebpf.ProgramID) (progRun, error) {
	var sum progRun
	for id := since; ; {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return sum, nil
		}
		if err != nil {
			return sum, fmt.Errorf("list eBPF programs after %d: %w", id, err)
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded in between
		}
		info, ierr := p.Info()
		st, serr := p.Stats()
		p.Close()
		if ierr != nil || serr != nil {
			continue
		}
		uprobe := info.Type == ebpf.Kprobe && strings.HasPrefix(info.Name, "uprobe_")
		socket := (info.Type == ebpf.SkMsg && info.Name == "skmsg_inject") || (info.Type == ebpf.SockOps && info.Name == "sockops_track")
		if !uprobe && !socket {
			continue
		}
		sum.Runtime += st.Runtime
		sum.Runs += st.RunCount
	}
}
