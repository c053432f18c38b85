// Package agent is the tracing daemon's loop: it attaches to the
// processes its configuration (package config) names or discovers in
// /proc, reads their kernel events, has package spans turn them into span
// records and package export send those out, and reloads, reports
// (metrics, health) and stops. It is the only layer, with cmd/, that logs.
//
// One span's path: an EventSource (the capture engine's Tracer, attached
// by an injected Attacher) yields events; the Assembler of package spans
// turns them into SpanRecords with typed attributes; the Pipeline of
// package export queues, batches and exports them (OTLP or stdout).
//
// Packages and the direction of their imports (an arrow means "imports";
// TestImportDirection fails on any other edge):
//
//	cmd/routerscope -> agent
//	agent           -> agent/discovery, agent/export, agent/spans, agent/config
//	agent/discovery -> agent/config
//	agent/export    -> agent/spans, agent/config
//	agent/spans     -> no other agent package
//	agent/config    -> no other agent package
//	the agent tree  -> probes -> bpf
//	agent/spans/spantest -> agent/spans, agent/config (fixtures, imported by tests only)
//
// agent/spans is where an event becomes a span; it knows nothing of
// export, configuration or discovery. agent/discovery is where a process
// is discovered: /proc scans, rule matching, a process's resource and
// build id. agent/export takes finished records out (OTLP, stdout) and
// knows nothing of discovery or the daemon loop. agent/config decodes and
// validates the configuration and imports no other agent package. Only
// cmd/, bench, deploy/ and e2e import the agent; probes and bpf never do.
// The `routerscope tree` renderer and the resolution cache shared by
// replicas of one binary are cmd/routerscope's, their only user.
//
// Nothing stays open forever: a span whose return is lost expires, a span
// whose process exits or whose frame is abandoned ends failed, and the
// spans still open when the agent stops end failed too.
//
// Discovery (manager.go, with package discovery): with
// routerscope.discovery rules the agent scans /proc and reconciles:
// processes selected by a rule and not excluded are attached, those gone
// are detached (their open spans end as process exited), a restarted
// process (a new PID, or the same PID with a new start time) is attached
// again at the next scan, well within 2 s. A restarted process is found
// 260 ms later on average, 510 ms at worst (BenchmarkRestartToAttach,
// with a synthetic attacher); attaching the real capture adds about 50 ms
// (loading the kernel programs) plus resolution, which replicas of one
// binary share: e2e TestNodeAgent measured 0.3 s from a router's restart
// to its "attached" log line. Each attached process's resource
// (discovery.ProcessResource) is handed to the export pipeline
// (export.Pipeline.AddProcess).
//
// When discovery looks (execwake.go): nothing can come to match a rule
// without a program being executed, so a small kernel program on the
// sched_process_exec raw tracepoint (probes.ExecWatcher, bpf/execwatch.c)
// records the pid of every exec on the node, and an idle agent sleeps
// until one. The kernel wakes the agent at most once per interval; the
// records in between are read at the ticks that follow (for two
// intervals after a wake-up the ticks flush the reader). Each process
// that executed is checked alone against the rules (a few /proc reads,
// ~20 us, not a walk of /proc) and attached if it matches. An exec can
// come before the process listens on its port: a process that a port
// rule selects in all but the port stays watched and is checked every
// discovery.interval (500 ms) for discovery.settle (5 s, at least two
// intervals). /proc is walked (and reconciled) at the start and after a
// reload, every interval for the settle window (processes already
// running may open their port later); while attach retries are pending;
// when an attached process executes another program; when the kernel
// dropped exec records (a full ring: probes.ExecWatcher.Dropped); and as
// a safety rescan every discovery.rescan_interval (30 s), for what no
// exec announces (a fork without exec, a port opened after the window).
// Exits need no scan: a pidfd per attached process reports them
// (exitwatch.go). The raw tracepoint needs CAP_BPF and CAP_PERFMON, the
// capture's capabilities, and neither tracefs nor kernel BTF, and the
// agent in the host's PID namespace (hostPID, as discovery needs anyway:
// the kernel reports host pids); where it cannot be attached the agent
// logs why, once, and walks /proc every interval as before. The proc connector was not used: it needs
// CAP_NET_ADMIN in the initial network namespace and reports every fork
// and exit too.
//
// Reloads (reload.go, dirwatch.go): SIGHUP, or a change of the config or
// probe files, reloads the config; only attachments change, so the
// assembler, the pipeline and the exporter carry the spans in flight
// across it. Changes are seen through inotify on the files' directories
// and every symlink on the way (a ConfigMap's ..data swap), a file is
// hashed only when its stat fingerprint moved, and watch_interval is the
// polling period only where a directory cannot be watched.
//
// Self-observability (metrics.go): Prometheus /metrics, /healthz and
// /readyz from one registry per Run.
package agent
