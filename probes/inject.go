package probes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/prometheus/procfs"

	"github.com/routerscope/routerscope/bpf"
)

// ErrNoCgroup2 is returned when traceparent injection is asked for on a
// machine without a cgroup v2 hierarchy to attach its socket programs to.
var ErrNoCgroup2 = errors.New("no cgroup v2 hierarchy mounted")

// injector is the loaded inject.c object, one per Capture: the sk_msg
// program on its socket map, and the sock_ops program on each cgroup a
// traced process runs in (counted, so processes sharing a cgroup share the
// attachment).
type injector struct {
	objs    bpf.InjectObjects
	msgLink link.Link // nil on kernels before 6.10 (attached without a link)
	cgroups map[string]*cgroupLink
	// pids counts the Tracers of each watched process (a re-attach adds
	// one before the old one goes): traced_tgids keeps pid until the last.
	pids map[int]int
}

// cgroupLink is the sock_ops attachment of one cgroup and how many traced
// processes use it.
type cgroupLink struct {
	link link.Link
	refs int
}

// newInjector loads inject.c sharing the capture object's inject_tids and
// trace_states maps, sized by sizes, and attaches sk_msg to its socket map.
func newInjector(tids, states *ebpf.Map, sizes MapSizes) (*injector, error) {
	spec, err := bpf.LoadInject()
	if err != nil {
		return nil, fmt.Errorf("load the inject object: %w", err)
	}
	sizes.apply(spec)
	inj := &injector{cgroups: map[string]*cgroupLink{}, pids: map[int]int{}}
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{"inject_tids": tids, "trace_states": states}}
	if err := spec.LoadAndAssign(&inj.objs, opts); err != nil {
		if verr := withVerifierLog("load the socket programs", err); verr != nil {
			return nil, verr
		}
		return nil, fmt.Errorf("load the socket programs: %w", err)
	}
	// The sk_msg program goes on the map first, so no socket is in the map
	// without it.
	msg, err := link.AttachRawLink(link.RawLinkOptions{
		Target:  inj.objs.ClientSocks.FD(),
		Program: inj.objs.SkmsgInject,
		Attach:  ebpf.AttachSkMsgVerdict,
	})
	if err != nil {
		// Kernels before 6.10 have no sk_msg links; attach the old way.
		err = link.RawAttachProgram(link.RawAttachProgramOptions{
			Target:  inj.objs.ClientSocks.FD(),
			Program: inj.objs.SkmsgInject,
			Attach:  ebpf.AttachSkMsgVerdict,
		})
		if err != nil {
			inj.close()
			return nil, fmt.Errorf("attach sk_msg to the socket map: %w", err)
		}
	} else {
		inj.msgLink = msg
	}
	return inj, nil
}

// addInjected has the Capture's injector (loaded on first use) watch the
// client sockets of pid (0: every process) in cgroup (empty: the process's
// own; for pid 0 the cgroup v2 root), and returns the cgroup.
func (c *Capture) addInjected(pid int, cgroup string) (string, error) {
	if cgroup == "" {
		var err error
		if cgroup, err = targetCgroup(pid); err != nil {
			return "", fmt.Errorf("attach traceparent injection: %w", err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.injector == nil {
		inj, err := newInjector(c.maps.InjectTids, c.maps.TraceStates, c.sizes)
		if err != nil {
			return "", fmt.Errorf("attach traceparent injection: %w", err)
		}
		c.injector = inj
	}
	inj := c.injector
	cl := inj.cgroups[cgroup]
	if cl == nil {
		ops, err := link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: ebpf.AttachCGroupSockOps, Program: inj.objs.SockopsTrack})
		if err != nil {
			return "", fmt.Errorf("attach traceparent injection: attach sock_ops to cgroup %s (needs CAP_NET_ADMIN): %w", cgroup, err)
		}
		cl = &cgroupLink{link: ops}
		inj.cgroups[cgroup] = cl
	}
	cl.refs++
	if err := inj.objs.TracedTgids.Put(uint32(pid), uint8(1)); err != nil {
		inj.release(cgroup)
		return "", fmt.Errorf("attach traceparent injection: watch pid %d (map size traced_tgids): %w", pid, err)
	}
	inj.pids[pid]++
	if pid != 0 {
		if err := inj.adoptSockets(pid); err != nil {
			inj.unwatch(pid)
			inj.release(cgroup)
			return "", fmt.Errorf("attach traceparent injection: %w", err)
		}
	}
	return cgroup, nil
}

// removeInjected stops watching pid's new sockets and detaches from its
// cgroup when no other traced process uses it. Sockets already in the map
// leave it when they close; no thread of pid is armed any more, so they
// carry nothing.
func (c *Capture) removeInjected(pid int, cgroup string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.injector == nil {
		return nil
	}
	c.injector.unwatch(pid)
	return c.injector.release(cgroup)
}

// unwatch drops one Tracer's watch of pid.
func (inj *injector) unwatch(pid int) {
	if inj.pids[pid]--; inj.pids[pid] > 0 {
		return
	}
	delete(inj.pids, pid)
	_ = inj.objs.TracedTgids.Delete(uint32(pid))
}

// release drops one use of cgroup's sock_ops attachment.
func (inj *injector) release(cgroup string) error {
	cl := inj.cgroups[cgroup]
	if cl == nil {
		return nil
	}
	if cl.refs--; cl.refs > 0 {
		return nil
	}
	delete(inj.cgroups, cgroup)
	return cl.link.Close()
}

// injectorStats adds the socket programs' counters to s.
func (c *Capture) injectorStats(s *PropagationStats) {
	c.mu.Lock()
	inj := c.injector
	c.mu.Unlock()
	if inj != nil {
		inj.addStats(s)
	}
}

// close detaches the cgroup programs first, so no socket joins the map
// while it goes away; sockets leave the map when it is freed.
func (inj *injector) close() error {
	var errs []error
	for name, cl := range inj.cgroups {
		errs = append(errs, cl.link.Close())
		delete(inj.cgroups, name)
	}
	if inj.msgLink != nil {
		errs = append(errs, inj.msgLink.Close())
	}
	errs = append(errs, inj.objs.Close())
	return errors.Join(errs...)
}

func (inj *injector) addStats(s *PropagationStats) {
	var perCPU []bpf.InjectInjectCounters
	if err := inj.objs.InjectCounters.Lookup(uint32(0), &perCPU); err != nil {
		return
	}
	c := sumPerCPU(perCPU)
	s.Injected += c.Injected
	s.NotHTTP += c.NotHttp
	s.PushErrors += c.PushError
	s.Sockets += c.Sockets
	s.Stale += c.Stale
	s.Undone += c.Undone
	s.Dropped += c.Dropped
	s.Replaced += c.Replaced
	s.Kept += c.Kept
}

// targetCgroup returns the cgroup v2 directory of pid (pid 0: the root of
// the cgroup v2 hierarchy), from /proc/mounts and /proc/PID/cgroup.
func targetCgroup(pid int) (string, error) {
	root, err := cgroup2Mount()
	if err != nil {
		return "", err
	}
	if pid == 0 {
		return root, nil
	}
	cgroups, err := readCgroups(pid)
	if err != nil {
		return "", fmt.Errorf("read the cgroup of pid %d: %w", pid, err)
	}
	for _, cg := range cgroups {
		// The cgroup v2 line is "0::/path" (cgroups(7)).
		if cg.HierarchyID == 0 && len(cg.Controllers) == 0 {
			dir := filepath.Join(root, filepath.Clean("/"+cg.Path))
			if _, err := os.Stat(dir); err != nil {
				return "", fmt.Errorf("cgroup v2 directory of pid %d: %w (set Propagation.Cgroup)", pid, err)
			}
			return dir, nil
		}
	}
	// Hybrid hierarchies list a v2 line only when v2 controllers are used;
	// without one the process is in the v2 root.
	return root, nil
}

// readCgroups reads /proc/PID/cgroup.
func readCgroups(pid int) ([]procfs.Cgroup, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return nil, err
	}
	return p.Cgroups()
}

// cgroup2Mount finds where the cgroup v2 hierarchy is mounted
// (/sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on hybrid ones).
func cgroup2Mount() (string, error) {
	mounts, err := procfs.GetMounts()
	if err != nil {
		return "", fmt.Errorf("find the cgroup v2 mount: %w", err)
	}
	for _, m := range mounts {
		if m.FSType == "cgroup2" {
			return m.MountPoint, nil
		}
	}
	return "", fmt.Errorf("find the cgroup v2 mount in /proc/self/mountinfo: %w (mount one, or turn Propagation.Inject off)", ErrNoCgroup2)
}
