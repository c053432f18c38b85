package config

import (
	"errors"
	"testing"
)

// FuzzParseConfig: any document either parses into a config that
// validates again, or fails with ErrConfig; never a panic.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("observability:\n  tracing:\n    enabled: true\n    sampling: {type: probabilistic, rate: 0.5}\n"))
	f.Add([]byte("routerscope:\n  export: {queue_size: 100, max_batch_size: 10}\n  discovery: {interval: 1s, rules: [{name: r, comm: router, probes: [p.yaml]}]}\n"))
	f.Add([]byte("observability: {tracing: {sampling: {rate: .nan}}}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error without ErrConfig: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("parsed config does not validate again: %v", err)
		}
		if r := cfg.Tracing.Sampling.Rate; !(r >= 0 && r <= 1) {
			t.Fatalf("rate %v accepted", r)
		}
		if q := cfg.Agent.Export.QueueSize; q <= 0 || q > MaxQueueSize {
			t.Fatalf("queue_size %d accepted", q)
		}
	})
}
