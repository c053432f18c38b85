package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// lastMapID is the highest eBPF map ID now in use: maps created later
// have higher IDs.
func lastMapID() ebpf.MapID {
	var last ebpf.MapID
	for id := ebpf.MapID(0); ; {
		next, err := ebpf.MapGetNextID(id)
		if err != nil {
			return last
		}
		id, last = next, next
	}
}

// ringBytes sums the producer positions of the ring buffers created after
// the map ID since: the bytes the kernel has reserved in them since they
// were made, each record's 8-byte header and padding to 8 bytes included,
// so it is what the records cost the ring whatever their format. Read it
// while the agent runs: the ring goes with it. Another process's ring
// buffers made meanwhile would be counted too.
func ringBytes(since ebpf.MapID) (uint64, error) {
	var sum uint64
	for id := since; ; {
		next, err := ebpf.MapGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return sum, nil
		}
		if err != nil {
			return sum, fmt.Errorf("list eBPF maps after %d: %w", id, err)
		}
		id = next
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			continue // freed in between
		}
		n, err := producerPos(m)
		m.Close()
		if err != nil {
			return sum, err
		}
		sum += n
	}
}

// producerPos reads a ring buffer map's producer position, the first
// 8 bytes of the page after the consumer page in the map's memory
// (include/uapi/linux/bpf.h, kernel/bpf/ringbuf.c); 0 for other maps.
func producerPos(m *ebpf.Map) (uint64, error) {
	if m.Type() != ebpf.RingBuf {
		return 0, nil
	}
	page := os.Getpagesize()
	mem, err := unix.Mmap(m.FD(), int64(page), page, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0, fmt.Errorf("map the producer page of ring buffer %v: %w", m, err)
	}
	defer unix.Munmap(mem)
	return binary.LittleEndian.Uint64(mem[:8]), nil
}
