package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat;
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// proc is a started child process with its output in a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// start runs bin with args, stdout and stderr to dir/name.log.
func start(dir, name, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log for %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGINT and waits up to timeout, then kills.
func (p *proc) stop(timeout time.Duration) error {
	if p.exited() {
		return p.err
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %v after SIGINT: killed (log %s)", p.name, timeout, p.log)
	}
}

// waitLog waits until the log holds want, failing early when the process
// exits first.
func (p *proc) waitLog(ctx context.Context, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(p.log)
		if bytes.Contains(data, []byte(want)) {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited before logging %q: %v; its log %s:\n%s", p.name, want, p.err, p.log, tail(data, 2000))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not log %q within %v (log %s)", p.name, want, timeout, p.log)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// waitPort waits until addr accepts TCP connections.
func waitPort(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s after %v", addr, timeout)
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// cpuTime is the process's user plus system CPU time, from /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, fmt.Errorf("read CPU time of %d: %w", pid, err)
	}
	st, err := p.Stat()
	if err != nil {
		return 0, fmt.Errorf("read CPU time of %d: %w", pid, err)
	}
	return time.Duration(st.UTime+st.STime) * time.Second / clockTicks, nil
}

// peakRSS is VmHWM from /proc/PID/status, in bytes: the most the
// process ever had resident, attaching included.
func peakRSS(pid int) (uint64, error) {
	s, err := status(pid)
	return s.VmHWM, err
}

// rss is VmRSS from /proc/PID/status, in bytes: resident now.
func rss(pid int) (uint64, error) {
	s, err := status(pid)
	return s.VmRSS, err
}

// status reads /proc/PID/status.
func status(pid int) (procfs.ProcStatus, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return procfs.ProcStatus{}, fmt.Errorf("read status of %d: %w", pid, err)
	}
	s, err := p.NewStatus()
	if err != nil {
		return procfs.ProcStatus{}, fmt.Errorf("read status of %d: %w", pid, err)
	}
	return s, nil
}

// agentCounters are the counters the agent logs when it stops.
type agentCounters struct {
	Finished     uint64 `json:"spans_finished"`
	Exported     uint64 `json:"spans_exported"`
	ExportFailed uint64 `json:"spans_export_failed"`
	Dropped      uint64 `json:"spans_dropped_queue_full"`
	Lost         uint64 `json:"lost_events"`
	Expired      uint64 `json:"spans_expired"`
}

// parseStopped finds the agent's "stopped" log line (zap JSON) and reads
// its counters.
func parseStopped(log []byte) (agentCounters, bool) {
	var c agentCounters
	for _, line := range bytes.Split(log, []byte("\n")) {
		var m struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal(line, &m) != nil || m.Msg != "stopped" {
			continue
		}
		if json.Unmarshal(line, &c) == nil {
			return c, true
		}
	}
	return c, false
}

// waitIdle waits until the process used no CPU for two polls in a row
// (it has drained its input), or until timeout.
func waitIdle(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	last, err := cpuTime(pid)
	if err != nil {
		return
	}
	quiet := 0
	for time.Now().Before(deadline) && quiet < 2 {
		time.Sleep(100 * time.Millisecond)
		now, err := cpuTime(pid)
		if err != nil {
			return
		}
		if now == last {
			quiet++
		} else {
			quiet = 0
		}
		last = now
	}
}

// parseDetach reads how long the agent's Tracer.Close took, from the
// "detached" line the bench agent writes (0 when absent).
func parseDetach(log []byte) time.Duration {
	for _, line := range bytes.Split(log, []byte("\n")) {
		var m struct {
			Msg     string  `json:"msg"`
			Seconds float64 `json:"detach_seconds"`
		}
		if json.Unmarshal(line, &m) == nil && m.Msg == "detached" {
			return time.Duration(m.Seconds * float64(time.Second))
		}
	}
	return 0
}

// threadsCPU is the CPU time of all the process's live threads, in
// nanoseconds, from /proc/PID/task/*/schedstat (first field: time on a
// CPU). Finer than the 10 ms ticks of /proc/PID/stat, so it can split a
// few seconds of load per request; Go rarely ends its threads, so little
// time leaves with exited ones.
func threadsCPU(pid int) (time.Duration, error) {
	var sum time.Duration
	err := eachTaskFile(pid, "schedstat", func(data []byte) error {
		f := strings.Fields(string(data))
		if len(f) == 0 {
			return nil
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return fmt.Errorf("parse schedstat %q: %w", data, err)
		}
		sum += time.Duration(ns)
		return nil
	})
	return sum, err
}

// eachTaskFile calls fn with the file name of every live thread of pid
// (/proc/PID/task/*/name); threads that end meanwhile are skipped.
func eachTaskFile(pid int, name string, fn func([]byte) error) error {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list threads of %d: %w", pid, err)
	}
	for _, t := range tasks {
		data, err := os.ReadFile(filepath.Join(dir, t.Name(), name))
		if err != nil {
			continue // the thread ended
		}
		if err := fn(data); err != nil {
			return fmt.Errorf("%s/%s: %w", dir, t.Name(), err)
		}
	}
	return nil
}
