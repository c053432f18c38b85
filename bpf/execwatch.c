//go:build ignore

// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
//
// Exec notification for discovery: one 8-byte ring buffer record (the
// process id) per program executed on the node, so the agent's discovery
// loop sleeps until something new may match a rule instead of scanning
// /proc on a timer. It hooks the sched_process_exec raw tracepoint, which
// needs neither tracefs nor kernel BTF, only CAP_BPF and CAP_PERFMON.
//
// A record means "look at /proc again", not "this pid and no other": so
// at most one is sent per min_gap_ns (user space sets it to the discovery
// interval at load), and a node that runs hundreds of programs a second
// (builds, exec probes) wakes the agent no more often than polling did.
// The execs in between are found by the scans the first one starts: it
// opens a settle window of scans every interval, longer than the gap. A
// full ring loses records, and that loses nothing either: one unread
// record already wakes the reader.

#include "vmlinux.h"
#include "bpf_helpers.h"

char __license[] SEC("license") = "Dual BSD/GPL";

// exec_events is sized from user space at load (one page: the smallest
// ring the kernel accepts).
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} exec_events SEC(".maps");

// min_gap_ns is the shortest time between two records (set at load).
volatile const __u64 min_gap_ns = 0;
// last_sent_ns is when the last record was sent. Two CPUs racing on it
// may both send: one extra record, harmless.
__u64 last_sent_ns = 0;

SEC("raw_tracepoint/sched_process_exec")
int on_exec(void *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	if (last_sent_ns != 0 && now - last_sent_ns < min_gap_ns)
		return 0;
	last_sent_ns = now;
	// The raw tracepoint's arguments (task, old pid, binprm) are not read:
	// the current task is the one that just executed.
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	bpf_ringbuf_output(&exec_events, &pid, sizeof(pid), 0);
	return 0;
}
