package config

import (
	"errors"
	"strings"
	"testing"
)

func TestKernelConfig(t *testing.T) {
	cfg, err := Parse([]byte(`
routerscope:
  kernel:
    ring_buffer_bytes: 8388608
    map_entries: {stacks: 4096, entry_vals: 1024}
`))
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Agent.Kernel.CaptureOptions()
	if o.RingBufferBytes != 8<<20 || o.Maps["stacks"] != 4096 || o.Maps["entry_vals"] != 1024 || len(o.Maps) != 2 {
		t.Errorf("capture options %+v", o)
	}
	if d := DefaultConfig().Agent.Kernel.CaptureOptions(); d.RingBufferBytes != 0 || d.Maps != nil {
		t.Errorf("default kernel options %+v, want the engine's defaults", d)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"ring_buffer_bytes: 3000", "power of two"},
		{"map_entries: {stack: 10}", `"stack": no such map`},
		{"map_entries: {stacks: 0}", "stacks of 0 entries"},
		{"map_entries: {stacks: -1}", "stacks of 0 entries"},
		{"map_entries: [stacks]", "a mapping of map name to entries"},
		{"map_entries: {stacks: many}", "integer"},
	} {
		_, err := Parse([]byte("routerscope:\n  kernel:\n    " + bad.yaml + "\n"))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want ErrConfig saying %q", bad.yaml, err, bad.want)
		}
	}
}
