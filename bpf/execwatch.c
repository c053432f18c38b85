//go:build ignore

// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
//
// Exec notification for discovery: one 8-byte ring buffer record (the
// process id) per program executed on the node, so the agent's discovery
// loop sleeps until something new may match a rule, and then looks at the
// processes that executed instead of walking /proc. It hooks the
// sched_process_exec raw tracepoint, which needs neither tracefs nor
// kernel BTF, only CAP_BPF and CAP_PERFMON.
//
// Every exec is recorded, but the reader is woken at most once per
// min_gap_ns (user space sets it to the discovery interval at load): the
// records in between wait in the ring until that wake-up, or until the
// agent's next scan tick drains them (it flushes the reader), so a node
// that runs hundreds of programs a second (builds, exec probes) does not
// wake the agent hundreds of times. A record that does not fit in the
// ring counts in exec_dropped, and the agent then walks /proc instead.

#include "vmlinux.h"
#include "bpf_helpers.h"

char __license[] SEC("license") = "Dual BSD/GPL";

// exec_events is sized from user space at load (one page: the smallest
// ring the kernel accepts).
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} exec_events SEC(".maps");

// min_gap_ns is the shortest time between two wake-ups (set at load).
volatile const __u64 min_gap_ns = 0;
// last_wake_ns is when a record last woke the reader. Two CPUs racing on
// it may both wake it: one extra wake-up, harmless.
__u64 last_wake_ns = 0;
// exec_dropped counts records the full ring had no room for.
__u64 exec_dropped = 0;

SEC("raw_tracepoint/sched_process_exec")
int on_exec(void *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	// Records left unread keep the consumer behind the producer, so the
	// kernel's adaptive notification would not wake the reader: wake it
	// explicitly once per gap, never in between.
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (last_wake_ns == 0 || now - last_wake_ns >= min_gap_ns) {
		last_wake_ns = now;
		flags = BPF_RB_FORCE_WAKEUP;
	}
	// The raw tracepoint's arguments (task, old pid, binprm) are not read:
	// the current task is the one that just executed.
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	if (bpf_ringbuf_output(&exec_events, &pid, sizeof(pid), flags) != 0)
		__sync_fetch_and_add(&exec_dropped, 1);
	return 0;
}
