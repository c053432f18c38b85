//go:build ignore

// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
//
// Exec notification for discovery: one 8-byte ring buffer record (the
// process id) per program executed on the node, so the agent's discovery
// loop sleeps until something new may match a rule instead of scanning
// /proc on a timer. It hooks the sched_process_exec raw tracepoint, which
// needs neither tracefs nor kernel BTF, only CAP_BPF and CAP_PERFMON.
//
// A full ring loses records, and that loses nothing: one unread record
// already wakes the reader, and a wake-up means "scan /proc", not "this
// pid". The kernel's adaptive notification wakes the reader only for the
// first record after it caught up, so a burst of execs costs one wake-up.

#include "vmlinux.h"
#include "bpf_helpers.h"

char __license[] SEC("license") = "Dual BSD/GPL";

// exec_events is sized from user space at load (one page: the smallest
// ring the kernel accepts).
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} exec_events SEC(".maps");

SEC("raw_tracepoint/sched_process_exec")
int on_exec(void *ctx)
{
	// The raw tracepoint's arguments (task, old pid, binprm) are not read:
	// the current task is the one that just executed.
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	bpf_ringbuf_output(&exec_events, &pid, sizeof(pid), 0);
	return 0;
}
