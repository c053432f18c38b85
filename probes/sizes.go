package probes

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
)

// MapSizes are the entry counts of the kernel maps, by map name, set from
// user space when a Capture loads. One Capture serves every traced process,
// so each bound is for the whole agent, not per process: the kernel memory
// is fixed by these numbers whatever the number of processes. Names not in
// the map keep DefaultMapSizes' value.
type MapSizes map[string]uint32

// mapSize documents one sizable map: its default and what one entry is.
// The bytes each entry costs are measured (Capture.Memory, make memory)
// and listed in the README.
type mapSize struct {
	name string
	def  uint32
	// what one entry holds, for errors and docs.
	what string
}

// mapSizes lists every map whose size the configuration sets. Defaults fit a
// node running 64 router processes in 32 MiB together with the default ring
// buffer (make memory prints the measured total).
var mapSizes = []mapSize{
	{"stacks", 8192, "a goroutine's open-span stack (776 bytes)"},
	{"inherit", 8192, "the span a goroutine was started under"},
	{"unsampled", 4096, "a goroutine inside a trace the sampler dropped"},
	{"newproc_callers", 1024, "a go statement in progress, per thread"},
	{"entry_vals", 2048, "an open sampled span's entry values, when they take more than 416 bytes (4.6 KiB)"},
	{"entry_small", 4096, "an open sampled span's entry values of up to 416 bytes, and its registers (512 bytes)"},
	{"descs", 256, "one probe's descriptor (1.6 KiB), shared by the processes of one build"},
	{"counters", 1024, "one process and probe's counters, per CPU"},
	{"lost", 256, "one process's lost-event count, per CPU"},
	{"prop_counters", 256, "one process's propagation counters, per CPU"},
	{"remote_parents", 4096, "an incoming traceparent waiting for its root span"},
	{"pending_states", 2048, "an incoming tracestate (264 bytes) waiting for its root span"},
	{"trace_states", 2048, "the tracestate (264 bytes) of a trace that came with one"},
	{"inject_reqs", 2048, "an outgoing request's span context, per connection"},
	{"inject_tids", 2048, "a thread armed to inject a traceparent"},
	{"client_socks", 16384, "a client socket the injector watches"},
	{"connecting", 2048, "a client socket between connect and handshake"},
	{"traced_tgids", 256, "a process whose sockets the injector watches"},
}

// maxMapEntries bounds any one map: a typo in the configuration must not
// ask the kernel for gigabytes.
const maxMapEntries = 1 << 20

// DefaultMapSizes returns the default entry count of every sizable map.
func DefaultMapSizes() MapSizes {
	m := MapSizes{}
	for _, s := range mapSizes {
		m[s.name] = s.def
	}
	return m
}

// MapSizeNames lists the names MapSizes accepts, in a stable order.
func MapSizeNames() []string {
	names := make([]string, len(mapSizes))
	for i, s := range mapSizes {
		names[i] = s.name
	}
	return names
}

// MapSizeDoc says what one entry of map name holds ("" for an unknown name).
func MapSizeDoc(name string) string {
	for _, s := range mapSizes {
		if s.name == name {
			return s.what
		}
	}
	return ""
}

// Check rejects unknown map names and sizes outside 1 to 2^20 entries.
func (m MapSizes) Check() error {
	for name, n := range m {
		if MapSizeDoc(name) == "" {
			return fmt.Errorf("map size for %q: no such map, use one of %s: %w", name, strings.Join(MapSizeNames(), ", "), ErrInvalidOptions)
		}
		if n == 0 || n > maxMapEntries {
			return fmt.Errorf("map %s of %d entries: use 1 to %d: %w", name, n, maxMapEntries, ErrInvalidOptions)
		}
	}
	return nil
}

// withDefaults returns m over the defaults.
func (m MapSizes) withDefaults() MapSizes {
	out := DefaultMapSizes()
	for name, n := range m {
		out[name] = n
	}
	return out
}

// apply sets the max_entries of every map of spec that m sizes.
func (m MapSizes) apply(spec *ebpf.CollectionSpec) {
	for name, ms := range spec.Maps {
		if n, ok := m[name]; ok {
			ms.MaxEntries = n
		}
	}
}

// checkRing validates a ring buffer size: a power of two, at least a page,
// at most 1 GiB (0 means DefaultRingBufferBytes).
func checkRing(ring int) (int, error) {
	if ring == 0 {
		ring = DefaultRingBufferBytes
	}
	page := os.Getpagesize()
	if ring < page || ring&(ring-1) != 0 || ring > 1<<30 {
		return 0, fmt.Errorf("ring buffer of %d bytes: use a power of two between %d and 1 GiB: %w", ring, page, ErrInvalidOptions)
	}
	return ring, nil
}

// sortedMapNames returns the names of m in the documented order, unknown
// ones last.
func sortedMapNames(m map[string]uint64) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	order := MapSizeNames()
	slices.SortFunc(names, func(a, b string) int {
		ia, ib := slices.Index(order, a), slices.Index(order, b)
		if ia < 0 {
			ia = len(order)
		}
		if ib < 0 {
			ib = len(order)
		}
		if ia != ib {
			return ia - ib
		}
		return strings.Compare(a, b)
	})
	return names
}
