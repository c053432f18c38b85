package daemonset

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/routerscope/routerscope/internal/testenv"
)

// This file checks the DaemonSet's capability set against the running kernel: a child
// process holding exactly the added capabilities (as the container runtime grants them to
// UID 0) must do everything the agent does, and without any one of them something must fail.
// The kernel work is the smallest that shows the permission: one- and two-instruction eBPF
// programs, a ring buffer, an uprobe_multi link on a process of another user, a SOCKHASH and a
// sock_ops link on the cgroup v2 root (a link, so it goes away with the child).

// targetBinary is what the uprobe target process runs: any world-readable executable does.
const targetBinary = "/bin/sleep"

// capOpEnv selects the operation a re-executed test binary performs (see TestCapabilityChild).
const capOpEnv = "ROUTERSCOPE_CAPS_OP"

// The agent's kernel operations, and the capabilities each needs.
var capOps = []struct {
	name string
	// needs lists the capabilities without which the operation must fail.
	needs []string
	// injection marks operations only trace-context injection performs.
	injection bool
}{
	{"tracing-program", []string{"BPF", "PERFMON"}, false},
	{"ring-buffer", []string{"BPF"}, false},
	// Discovery's exec notification (probes.ExecWatcher).
	{"exec-raw-tracepoint", []string{"BPF", "PERFMON"}, false},
	{"read-target-binary", []string{"SYS_PTRACE"}, false},
	{"uprobe-multi", []string{"BPF", "PERFMON", "SYS_PTRACE"}, false},
	{"sock-ops-on-cgroup-root", []string{"BPF", "NET_ADMIN"}, true},
}

func TestCapabilitiesOnThisKernel(t *testing.T) {
	testenv.RequireRoot(t, "running children with a chosen capability set")
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is needed to run a child with a chosen capability set: %v", err)
	}
	// The target: a process of another user, as routers in other containers are.
	target := exec.Command(targetBinary, "600")
	target.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = target.Process.Kill()
		_ = target.Wait()
	})
	pid := strconv.Itoa(target.Process.Pid)
	cgroup, err := cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}

	run := func(op string, caps []string) error {
		bounding := "-all"
		for _, c := range caps {
			bounding += ",+" + strings.ToLower(c)
		}
		// UID 0 with a limited bounding set and nothing inheritable: after exec the child's
		// permitted and effective sets are exactly caps, as in the container.
		cmd := exec.Command(setpriv, "--bounding-set="+bounding, "--inh-caps=-all",
			os.Args[0], "-test.run=^TestCapabilityChild$", "-test.v")
		cmd.Env = append(os.Environ(), capOpEnv+"="+op, "ROUTERSCOPE_CAPS_PID="+pid, "ROUTERSCOPE_CAPS_CGROUP="+cgroup)
		out, err := cmd.CombinedOutput()
		s := string(out)
		if i := strings.Index(s, "RESULT "); i >= 0 {
			line, _, _ := strings.Cut(s[i+len("RESULT "):], "\n")
			if line == "ok" {
				return nil
			}
			return errors.New(line)
		}
		return fmt.Errorf("child printed no RESULT (%v):\n%s", err, s)
	}

	all := make([]string, len(addedCapabilities))
	for i, c := range addedCapabilities {
		all[i] = string(c)
	}
	for _, op := range capOps {
		if err := run(op.name, all); err != nil {
			t.Errorf("%s with the DaemonSet's capabilities %v: %v", op.name, all, err)
		}
		for _, c := range op.needs {
			without := slicesWithout(all, c)
			if err := run(op.name, without); err == nil {
				t.Errorf("%s succeeded without CAP_%s: the DaemonSet's comment on %s is wrong", op.name, c, c)
			} else {
				t.Logf("%s without CAP_%s: %v (as expected)", op.name, c, err)
			}
		}
		if !op.injection {
			// Uprobe-only mode needs no CAP_NET_ADMIN.
			if err := run(op.name, slicesWithout(all, "NET_ADMIN")); err != nil {
				t.Errorf("%s without CAP_NET_ADMIN: %v; uprobe-only tracing must not need it", op.name, err)
			}
		}
	}
	// Not an assertion, because it depends on the kernel: whether the classic perf-event
	// uprobe would work with the same set. Since "perf: Require CAP_SYS_ADMIN for uprobes"
	// (2025) it needs CAP_SYS_ADMIN, which is why the agent must use uprobe_multi.
	t.Logf("perf_event_open uprobe with %v: %v; adding SYS_ADMIN: %v", all, run("perf-uprobe", all), run("perf-uprobe", append(all, "SYS_ADMIN")))
}

func slicesWithout(s []string, drop string) []string {
	var out []string
	for _, v := range s {
		if v != drop {
			out = append(out, v)
		}
	}
	return out
}

// cgroup2Root finds the cgroup v2 mount (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid
// hosts) in /proc/self/mountinfo.
func cgroup2Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		pre, post, ok := strings.Cut(s.Text(), " - ")
		fields := strings.Fields(pre)
		if ok && strings.HasPrefix(post, "cgroup2 ") && len(fields) >= 5 {
			return fields[4], nil
		}
	}
	return "", errors.New("no cgroup2 mount in /proc/self/mountinfo: injection needs the cgroup v2 hierarchy")
}

// TestCapabilityChild is the child side of TestCapabilitiesOnThisKernel; it does nothing when
// run directly.
func TestCapabilityChild(t *testing.T) {
	op := os.Getenv(capOpEnv)
	if op == "" {
		t.Skip("runs only as a child of TestCapabilitiesOnThisKernel")
	}
	// Capabilities are per thread; the child got them at exec, so every thread has them, but
	// keep the work on one thread anyway.
	runtime.LockOSThread()
	err := capOp(op, os.Getenv("ROUTERSCOPE_CAPS_PID"), os.Getenv("ROUTERSCOPE_CAPS_CGROUP"))
	if err != nil {
		fmt.Printf("RESULT %v\n", err)
		return
	}
	fmt.Println("RESULT ok")
}

func capOp(op, pid, cgroup string) error {
	switch op {
	case "tracing-program":
		fd, err := loadProgram(unix.BPF_PROG_TYPE_KPROBE, unix.BPF_TRACE_UPROBE_MULTI, 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	case "ring-buffer":
		fd, err := createMap(unix.BPF_MAP_TYPE_RINGBUF, 0, 0, 4096)
		if err == nil {
			unix.Close(fd)
		}
		return err
	case "exec-raw-tracepoint":
		fd, err := loadProgram(unix.BPF_PROG_TYPE_RAW_TRACEPOINT, 0, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		name := []byte("sched_process_exec\x00")
		// union bpf_attr for BPF_RAW_TRACEPOINT_OPEN: name, prog_fd.
		attr := struct {
			name         uint64
			progFD, _pad uint32
		}{name: uint64(uintptr(unsafe.Pointer(&name[0]))), progFD: uint32(fd)}
		lfd, err := bpf(unix.BPF_RAW_TRACEPOINT_OPEN, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
		runtime.KeepAlive(name)
		if err != nil {
			return fmt.Errorf("open raw tracepoint sched_process_exec: %w", err)
		}
		return unix.Close(lfd)
	case "read-target-binary":
		// The agent parses the target's ELF symbols through /proc/PID/exe.
		f, err := os.Open("/proc/" + pid + "/exe")
		if err != nil {
			return err
		}
		return f.Close()
	case "uprobe-multi":
		// The offset comes from the file itself (world-readable), so that only the kernel's
		// own permission check on /proc/PID/exe decides.
		off, err := entryOffset(targetBinary)
		if err != nil {
			return err
		}
		return attachUprobeMulti("/proc/"+pid+"/exe", off, pid)
	case "perf-uprobe":
		off, err := entryOffset(targetBinary)
		if err != nil {
			return err
		}
		return perfUprobe("/proc/"+pid+"/exe", off)
	case "sock-ops-on-cgroup-root":
		return sockOps(cgroup)
	}
	return fmt.Errorf("unknown operation %q", op)
}

// bpf issues one bpf(2) command with attr.
func bpf(cmd int, attr unsafe.Pointer, size uintptr) (int, error) {
	fd, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// loadProgram loads "r0 = ret; exit", the smallest valid program of a type.
func loadProgram(progType, attachType uint32, ret int32) (int, error) {
	insns := []uint64{
		0xb7 | uint64(uint32(ret))<<32, // BPF_ALU64|BPF_MOV|BPF_K: r0 = ret
		0x95,                           // BPF_JMP|BPF_EXIT
	}
	license := []byte("GPL\x00")
	// The head of union bpf_attr for BPF_PROG_LOAD, up to expected_attach_type.
	attr := struct {
		progType, insnCnt   uint32
		insns, license      uint64
		logLevel, logSize   uint32
		logBuf              uint64
		kernVersion, flags  uint32
		name                [16]byte
		ifindex, attachType uint32
	}{progType: progType, insnCnt: uint32(len(insns)), attachType: attachType,
		insns: uint64(uintptr(unsafe.Pointer(&insns[0]))), license: uint64(uintptr(unsafe.Pointer(&license[0])))}
	fd, err := bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	if err != nil {
		return -1, fmt.Errorf("load program type %d: %w", progType, err)
	}
	return fd, nil
}

func createMap(mapType, keySize, valueSize, maxEntries uint32) (int, error) {
	attr := struct{ mapType, keySize, valueSize, maxEntries, flags uint32 }{mapType, keySize, valueSize, maxEntries, 0}
	fd, err := bpf(unix.BPF_MAP_CREATE, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		return -1, fmt.Errorf("create map type %d: %w", mapType, err)
	}
	return fd, nil
}

// entryOffset is the file offset of an ELF executable's entry point: an instruction boundary,
// so a valid place for an uprobe.
func entryOffset(path string) (uint64, error) {
	f, err := elf.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && f.Entry >= p.Vaddr && f.Entry < p.Vaddr+p.Filesz {
			return f.Entry - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("%s: entry point %#x is in no executable segment", path, f.Entry)
}

func attachUprobeMulti(path string, off uint64, pid string) error {
	prog, err := loadProgram(unix.BPF_PROG_TYPE_KPROBE, unix.BPF_TRACE_UPROBE_MULTI, 0)
	if err != nil {
		return err
	}
	defer unix.Close(prog)
	p, _ := strconv.Atoi(pid)
	cpath := append([]byte(path), 0)
	offsets := []uint64{off}
	// union bpf_attr for BPF_LINK_CREATE with the uprobe_multi member (Linux 6.6+).
	attr := struct {
		progFD, targetFD, attachType, flags uint32
		path, offsets, refCtrs, cookies     uint64
		cnt, multiFlags, pid, _             uint32
	}{progFD: uint32(prog), attachType: unix.BPF_TRACE_UPROBE_MULTI, cnt: 1, pid: uint32(p),
		path: uint64(uintptr(unsafe.Pointer(&cpath[0]))), offsets: uint64(uintptr(unsafe.Pointer(&offsets[0])))}
	fd, err := bpf(unix.BPF_LINK_CREATE, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(cpath)
	runtime.KeepAlive(offsets)
	if err != nil {
		return fmt.Errorf("uprobe_multi link on %s+%#x: %w", path, off, err)
	}
	return unix.Close(fd)
}

func perfUprobe(path string, off uint64) error {
	data, err := os.ReadFile("/sys/bus/event_source/devices/uprobe/type")
	if err != nil {
		return err
	}
	typ, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return err
	}
	cpath := append([]byte(path), 0)
	attr := unix.PerfEventAttr{Type: uint32(typ), Size: uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
		Ext1: uint64(uintptr(unsafe.Pointer(&cpath[0]))), Ext2: off}
	fd, err := unix.PerfEventOpen(&attr, -1, 0, -1, unix.PERF_FLAG_FD_CLOEXEC)
	runtime.KeepAlive(cpath)
	if err != nil {
		return fmt.Errorf("perf_event_open uprobe: %w", err)
	}
	return unix.Close(fd)
}

func sockOps(cgroup string) error {
	m, err := createMap(unix.BPF_MAP_TYPE_SOCKHASH, 8, 8, 64)
	if err != nil {
		return err
	}
	defer unix.Close(m)
	prog, err := loadProgram(unix.BPF_PROG_TYPE_SOCK_OPS, 0, 1)
	if err != nil {
		return err
	}
	defer unix.Close(prog)
	cg, err := unix.Open(cgroup, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", cgroup, err)
	}
	defer unix.Close(cg)
	// A link, not BPF_PROG_ATTACH: it detaches when its fd closes, even if the child dies.
	attr := struct{ progFD, targetFD, attachType, flags uint32 }{uint32(prog), uint32(cg), unix.BPF_CGROUP_SOCK_OPS, 0}
	fd, err := bpf(unix.BPF_LINK_CREATE, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		return fmt.Errorf("attach sock_ops to %s: %w", cgroup, err)
	}
	return unix.Close(fd)
}
