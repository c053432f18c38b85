//go:build !linux

package probes

import "fmt"

// adoptSockets needs pidfd_getfd and SO_COOKIE, which only Linux has.
func (inj *injector) adoptSockets(pid int) error {
	return fmt.Errorf("adopt the sockets of pid %d: %w", pid, ErrNotSupported)
}
