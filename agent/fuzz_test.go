package agent

import (
	"errors"
	"strings"
	"testing"
)

// Fuzz tests of every parser fed by input the agent does not control:
// the config file, the stdout exporter's JSON given to `routerscope
// tree`, another process's /proc entries, and the strings of span
// records. The seed corpora are in testdata/fuzz; `make fuzz` (called by
// `make test`) runs each target for a few seconds.

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

// FuzzParseStartTime: a stat line of any shape gives a start time or
// errBadStat, never a panic.
func FuzzParseStartTime(f *testing.F) {
	f.Add([]byte("4242 (router) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 9 0 123456 0 0"))
	f.Add([]byte("7 (a) b) (c) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 99 0"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, stat []byte) {
		if _, err := parseStartTime(stat); err != nil && !errors.Is(err, errBadStat) {
			t.Fatalf("error without errBadStat: %v", err)
		}
	})
}

// FuzzCgroupIDs: any cgroup file yields ids made of the characters the
// patterns allow, or none.
func FuzzCgroupIDs(f *testing.F) {
	f.Add([]byte("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b3c4d_1a2b_1a2b_1a2b_1a2b3c4d5e6f.slice/cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope\n"))
	f.Add([]byte("12:memory:/docker/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"))
	f.Add([]byte("0::/\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cid, pod := cgroupIDs(data)
		for _, s := range []string{cid, pod} {
			if strings.Trim(s, "0123456789abcdef-") != "" {
				t.Fatalf("id %q holds other characters", s)
			}
		}
	})
}

// FuzzConfigFlag: a command line of any shape gives a --config value that
// is one of its arguments (or a suffix of one), or none.
func FuzzConfigFlag(f *testing.F) {
	f.Add("/app/router\x00--config\x00/etc/c.yaml")
	f.Add("/app/router\x00-config=c.yaml\x00--\x00--config\x00x")
	f.Add("--config")
	f.Fuzz(func(t *testing.T, cmdline string) {
		args := strings.Split(cmdline, "\x00")
		v, ok := configFlag(args)
		if ok && !strings.Contains(cmdline, v) {
			t.Fatalf("value %q is not in the command line", v)
		}
	})
}
