package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigBounds: each size and rate past its bound is a config error
// naming the key; the defaults and the example stay inside them.
func TestConfigBounds(t *testing.T) {
	cases := []struct{ name, yaml, key string }{
		{"huge queue", "routerscope:\n  export: {queue_size: 2000000000}\n", "export.queue_size"},
		{"queue times processes", "routerscope:\n  export: {queue_size: 100000}\n  discovery: {max_processes: 1000}\n", "queue slots"},
		{"too many processes", "routerscope:\n  discovery: {max_processes: 100000}\n", "discovery.max_processes"},
		{"scan every nanosecond", "routerscope:\n  discovery: {interval: 1ns}\n", "discovery.interval"},
		{"retry every microsecond", "routerscope:\n  discovery: {retry_interval: 1us}\n", "discovery.retry_interval"},
		{"settle of a microsecond", "routerscope:\n  discovery: {settle: 1us}\n", "discovery.settle"},
		{"rescan every microsecond", "routerscope:\n  discovery: {rescan_interval: 1us}\n", "discovery.rescan_interval"},
		{"watch every nanosecond", "routerscope:\n  watch_interval: 1ns\n", "watch_interval"},
	}
	for _, tc := range cases {
		_, err := Parse([]byte(tc.yaml))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: got %v, want a config error naming %s", tc.name, err, tc.key)
		}
	}
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if _, err := Parse([]byte("routerscope:\n  watch_interval: 0s\n")); err != nil {
		t.Errorf("watch_interval 0 turns the watch off: %v", err)
	}
	if _, err := LoadFile("../../config/agent.yaml"); err != nil {
		t.Errorf("example config: %v", err)
	}
}

// TestConfigFileReadIsBounded: --config /dev/zero or a huge file is a
// config error after MaxConfigBytes, not a read until out of memory.
func TestConfigFileReadIsBounded(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err == nil {
		if _, err := LoadFile("/dev/zero"); !errors.Is(err, ErrConfig) {
			t.Errorf("/dev/zero: %v", err)
		}
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, []byte("routerscope: {}\n"+strings.Repeat("#", MaxConfigBytes)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(big); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "bytes") {
		t.Errorf("file past %d bytes: %v", MaxConfigBytes, err)
	}
}
