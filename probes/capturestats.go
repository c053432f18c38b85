package probes

import (
	"errors"
	"fmt"
	"reflect"
	"sort"

	"github.com/cilium/ebpf"

	"github.com/routerscope/routerscope/bpf"
)

// MapMemory is one kernel map of a Capture and the memory it holds.
type MapMemory struct {
	Name string
	Type ebpf.MapType
	// MaxEntries is its size (bytes for the ring buffer).
	MaxEntries uint32
	// Bytes is the locked kernel memory the kernel reports for it
	// (bpf_map_info's memlock, from /proc/self/fdinfo).
	Bytes uint64
}

// Memory lists the Capture's maps with the kernel memory each holds: the
// capture object's, the propagation programs' (they share those) and the
// injector's once it is loaded. The total does not depend on the number
// of attached processes: every map is sized at load.
func (c *Capture) Memory() ([]MapMemory, error) {
	var out []MapMemory
	var errs []error
	add := func(name string, m *ebpf.Map) {
		if m == nil {
			return
		}
		info, err := m.Info()
		if err != nil {
			errs = append(errs, fmt.Errorf("read info of map %s: %w", name, err))
			return
		}
		b, _ := info.Memlock()
		out = append(out, MapMemory{Name: name, Type: m.Type(), MaxEntries: m.MaxEntries(), Bytes: b})
	}
	eachMap(&c.maps, add)
	c.mu.Lock()
	if inj := c.injector; inj != nil {
		// inject_tids and trace_states are the capture object's maps
		// (MapReplacements), already counted.
		eachMap(&inj.objs.InjectMaps, func(name string, m *ebpf.Map) {
			if name != bpf.CaptureMapInjectTids && name != bpf.CaptureMapTraceStates {
				add(name, m)
			}
		})
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, errors.Join(errs...)
}

// MemoryBytes is the total of Memory.
func (c *Capture) MemoryBytes() (uint64, error) {
	maps, err := c.Memory()
	var n uint64
	for _, m := range maps {
		n += m.Bytes
	}
	return n, err
}

// eachMap calls f with the ebpf tag and value of every *ebpf.Map field of
// a bpf2go maps struct (CaptureMaps, InjectMaps), so a map added to the C
// side is measured without a change here.
func eachMap(maps any, f func(name string, m *ebpf.Map)) {
	v := reflect.ValueOf(maps).Elem()
	for i := range v.NumField() {
		m, ok := v.Field(i).Interface().(*ebpf.Map)
		if !ok {
			continue
		}
		f(v.Type().Field(i).Tag.Get("ebpf"), m)
	}
}

// ProcessProbeStats are the kernel counters of one probe in one process.
type ProcessProbeStats struct {
	PID int
	ProbeStats
}

// CaptureStats are the kernel's counters over every process of a Capture,
// for /metrics: per process and probe, per process, and for the Capture.
type CaptureStats struct {
	// Probes are the per-probe counters of every attached process (a
	// Tracer of every process of a binary, pid 0, counts under each
	// process that ran).
	Probes []ProcessProbeStats
	// Lost are the records the kernel dropped because the ring buffer was
	// full, by process.
	Lost map[int]uint64
	// Propagation are the uprobe side's trace context counters by process
	// (the Extracted to StatesDropped and Recorded, Armed fields).
	Propagation map[int]PropagationStats
	// Sockets are the socket programs' counters for the whole Capture
	// (Injected, Sockets, NotHTTP, PushErrors, Stale, Undone, Dropped,
	// Replaced): they run outside the process.
	Sockets PropagationStats
	// Maps are the maps' sizes and memory (see Memory), with Entries for
	// the hash maps (an LRU map at its capacity evicts).
	Maps []MapStats
	// Unrouted counts records that reached no Tracer.
	Unrouted uint64
}

// MapStats are one map's size, memory and, for hash maps, the entries in
// use when read.
type MapStats struct {
	MapMemory
	// Entries counts the keys of a hash map (-1: not counted, as for
	// arrays and the ring buffer).
	Entries int
}

// Stats reads every kernel counter of the Capture. It walks the keys of
// the hash maps, a few thousand system calls at the default sizes: meant
// for a metrics scrape, not a hot path.
func (c *Capture) Stats() CaptureStats {
	s := CaptureStats{Lost: map[int]uint64{}, Propagation: map[int]PropagationStats{}, Unrouted: c.unrouted.Load()}
	type owner struct {
		t  *Tracer
		id int
	}
	c.mu.Lock()
	owners := map[uint32]owner{}
	// Lost and propagation counts are reported only for processes with a
	// Tracer: a kernel program still running for an exited process (a
	// socket's last callbacks) can count again after forget deleted them.
	// A Tracer of every process (pid 0) keeps them all.
	traced := map[uint32]bool{}
	all := false
	for t := range c.tracers {
		traced[uint32(t.pid)] = true
		all = all || t.pid == 0
		for id, p := range t.byID {
			if p != nil {
				owners[uint32(t.base+id)] = owner{t, id}
			}
		}
	}
	c.mu.Unlock()

	var k bpf.CaptureCounterKey
	var perCPU []bpf.CaptureProbeCounters
	it := c.maps.Counters.Iterate()
	for it.Next(&k, &perCPU) {
		o, ok := owners[k.ProbeId]
		if !ok {
			continue
		}
		p := o.t.byID[o.id]
		ps := ProcessProbeStats{PID: int(k.Tgid), ProbeStats: ProbeStats{Symbol: p.Spec.Symbol, Span: p.Spec.Span}}
		if o.t.attached.Load() {
			ps.Uprobes = o.t.uprobes[o.id]
		}
		addCounters(&ps.ProbeStats, sumPerCPU(perCPU))
		s.Probes = append(s.Probes, ps)
	}
	sort.Slice(s.Probes, func(i, j int) bool {
		if s.Probes[i].PID != s.Probes[j].PID {
			return s.Probes[i].PID < s.Probes[j].PID
		}
		return s.Probes[i].Span < s.Probes[j].Span
	})

	var tgid uint32
	var lost []uint64
	lit := c.maps.Lost.Iterate()
	for lit.Next(&tgid, &lost) {
		if !all && !traced[tgid] {
			continue
		}
		for _, v := range lost {
			s.Lost[int(tgid)] += v
		}
	}
	var prop []bpf.CapturePropagationCounters
	pit := c.maps.PropCounters.Iterate()
	for pit.Next(&tgid, &prop) {
		if !all && !traced[tgid] {
			continue
		}
		var ps PropagationStats
		addPropCounters(&ps, prop)
		s.Propagation[int(tgid)] = ps
	}
	c.injectorStats(&s.Sockets)

	maps, _ := c.Memory()
	for _, m := range maps {
		ms := MapStats{MapMemory: m, Entries: -1}
		if isHash(m.Type) {
			ms.Entries = c.countEntries(m.Name)
		}
		s.Maps = append(s.Maps, ms)
	}
	return s
}

// isHash tells the map types whose entries come and go.
func isHash(t ebpf.MapType) bool {
	switch t {
	case ebpf.Hash, ebpf.LRUHash, ebpf.PerCPUHash, ebpf.LRUCPUHash, ebpf.SockHash:
		return true
	}
	return false
}

// countEntries counts the keys of the named map, at most its size (a map
// changing under the walk can make it restart).
func (c *Capture) countEntries(name string) int {
	var m *ebpf.Map
	find := func(n string, mm *ebpf.Map) {
		if n == name {
			m = mm
		}
	}
	eachMap(&c.maps, find)
	c.mu.Lock()
	if m == nil && c.injector != nil {
		eachMap(&c.injector.objs.InjectMaps, find)
	}
	c.mu.Unlock()
	if m == nil {
		return -1
	}
	keySize := int(m.KeySize())
	key := make([]byte, keySize)
	next := make([]byte, keySize)
	var prev any // nil: the first key
	n := 0
	for n < int(m.MaxEntries()) {
		if err := m.NextKey(prev, &next); err != nil {
			break // ErrKeyNotExist at the end
		}
		n++
		copy(key, next)
		prev = key
	}
	return n
}

// addPropCounters sums the per-CPU uprobe-side propagation counters.
func addPropCounters(s *PropagationStats, perCPU []bpf.CapturePropagationCounters) {
	c := sumPerCPU(perCPU)
	s.Extracted += c.Extracted
	s.Invalid += c.Invalid
	s.Consumed += c.Consumed
	s.Recorded += c.Recorded
	s.Armed += c.Handed
	s.Duplicates += c.Duplicate
	s.StatesDropped += c.TsDropped
}
