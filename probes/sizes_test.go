package probes

import (
	"errors"
	"testing"

	"github.com/routerscope/routerscope/internal/testenv"
)

func TestMapSizesCheck(t *testing.T) {
	if err := DefaultMapSizes().Check(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, name := range MapSizeNames() {
		if MapSizeDoc(name) == "" {
			t.Errorf("map %s has no documentation", name)
		}
	}
	for _, bad := range []MapSizes{{"stack": 10}, {"stacks": 0}, {"stacks": maxMapEntries + 1}} {
		if err := bad.Check(); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%v: %v, want ErrInvalidOptions", bad, err)
		}
	}
	got := MapSizes{"stacks": 100}.withDefaults()
	if got["stacks"] != 100 || got["inherit"] != DefaultMapSizes()["inherit"] {
		t.Errorf("withDefaults: %v", got)
	}
}

// TestCaptureMapSizes: sizes given at load are the kernel's, and a wrong
// name or ring size refuses the Capture.
func TestCaptureMapSizes(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	if _, err := NewCapture(CaptureOptions{Maps: MapSizes{"nope": 1}}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("unknown map: %v", err)
	}
	if _, err := NewCapture(CaptureOptions{RingBufferBytes: 3000}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("ring of 3000 bytes: %v", err)
	}
	c := newTestCapture(t, CaptureOptions{RingBufferBytes: 1 << 16, Maps: MapSizes{"stacks": 128, "entry_vals": 64}})
	maps, err := c.Memory()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint32{"stacks": 128, "entry_vals": 64, "events": 1 << 16, "inherit": DefaultMapSizes()["inherit"]}
	for _, m := range maps {
		if w, ok := want[m.Name]; ok {
			if m.MaxEntries != w || m.Bytes == 0 {
				t.Errorf("map %s: %d entries, %d bytes; want %d entries", m.Name, m.MaxEntries, m.Bytes, w)
			}
			delete(want, m.Name)
		}
	}
	if len(want) != 0 {
		t.Errorf("maps not listed: %v", want)
	}
	small, _ := c.MemoryBytes()
	if small > 12<<20 {
		t.Errorf("small capture holds %d bytes", small)
	}
}
