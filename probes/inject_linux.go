//go:build linux

package probes

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// adoptSockets puts the established TCP sockets pid already has into the
// socket map: sock_ops only sees connections made after it was attached.
// The descriptors are copied out of the target with pidfd_getfd (Linux
// 5.6); sockets the map refuses (listening, UDP, Unix) are skipped.
func (inj *injector) adoptSockets(pid int) error {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return fmt.Errorf("list the sockets of pid %d: %w", pid, err)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("open pidfd of pid %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	for _, e := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err != nil || !strings.HasPrefix(target, "socket:") {
			continue
		}
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		if err != nil {
			continue // closed meanwhile
		}
		if cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE); err == nil {
			_ = inj.objs.ClientSocks.Update(cookie, uint64(fd), ebpf.UpdateAny)
		}
		unix.Close(fd)
	}
	return nil
}
