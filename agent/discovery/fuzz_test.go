package discovery

import (
	"errors"
	"strings"
	"testing"
)

// Fuzz tests of the parsers here fed by input the agent does not control:
// another process's /proc entries and command line. The config file's
// (agent/config), the span strings' (agent/spans) and the stdout JSON's
// given to `routerscope tree` (cmd/routerscope) are beside their code.
// The seed corpora are in testdata/fuzz; `make fuzz` (called by `make
// test`) runs each target for a few seconds.

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
