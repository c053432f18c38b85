package discovery

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/routerscope/routerscope/agent/config"
)

// fakeProc is one process of a fake proc tree.
type fakeProc struct {
	pid     int
	start   uint64
	exe     string
	comm    string
	cmdline []string
	// listen are ports with a listening socket the process holds; other
	// are listening sockets of its network namespace it does not hold.
	listen, other []int
	cgroup        string
	environ       []string
}

// writeFakeProc lays out the files discovery reads for p under root.
func writeFakeProc(t *testing.T, root string, p fakeProc) {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprint(p.pid))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "fd"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "net"), 0o755))
	// The name holds a space and a parenthesis, as real names may.
	stat := fmt.Sprintf("%d (%s) S 1 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 %d 1000 10 18446744073709551615", p.pid, p.comm+") x", p.start)
	must(os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644))
	must(os.WriteFile(filepath.Join(dir, "comm"), []byte(p.comm+"\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "cmdline"), []byte(strings.Join(p.cmdline, "\x00")+"\x00"), 0o644))
	if p.exe != "" {
		must(os.Symlink(p.exe, filepath.Join(dir, "exe")))
	}
	tcp := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	inode := 1000 + p.pid*10
	for i, port := range append(append([]int{}, p.listen...), p.other...) {
		tcp += fmt.Sprintf("   %d: 00000000:%04X 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 %d 1 0000000000000000 100 0 0 10 0\n", i, port, inode+i)
		if i < len(p.listen) {
			must(os.Symlink(fmt.Sprintf("socket:[%d]", inode+i), filepath.Join(dir, "fd", fmt.Sprint(3+i))))
		}
	}
	// An established connection on a matching port does not count.
	tcp += fmt.Sprintf("   9: 0100007F:%04X 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 %d 1 0000000000000000 100 0 0 10 0\n", 7777, inode+9)
	must(os.Symlink(fmt.Sprintf("socket:[%d]", inode+9), filepath.Join(dir, "fd", "99")))
	must(os.Symlink("/dev/null", filepath.Join(dir, "fd", "0")))
	must(os.WriteFile(filepath.Join(dir, "net", "tcp6"), []byte(tcp), 0o644))
	must(os.WriteFile(filepath.Join(dir, "cgroup"), []byte(p.cgroup), 0o644))
	must(os.WriteFile(filepath.Join(dir, "environ"), []byte(strings.Join(p.environ, "\x00")), 0o644))
}

func fakeProcTree(t *testing.T, procs ...fakeProc) string {
	root := t.TempDir()
	for _, p := range procs {
		writeFakeProc(t, root, p)
	}
	// Not processes: ignored.
	if err := os.MkdirAll(filepath.Join(root, "sys"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A kernel thread: no exe link.
	kdir := filepath.Join(root, "2")
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(kdir, "stat"), []byte("2 (kthreadd) S 0 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0"), 0o644)
	return root
}

// compiled returns d's rules and exclusions validated and compiled, as
// the config loader leaves them.
func compiled(t testing.TB, d config.Discovery) config.Discovery {
	t.Helper()
	cfg := config.DefaultConfig()
	cfg.Agent.Discovery.Rules, cfg.Agent.Discovery.Exclude = d.Rules, d.Exclude
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg.Agent.Discovery
}

func TestRuleMatchingOnFakeProc(t *testing.T) {
	root := fakeProcTree(t,
		fakeProc{pid: 100, start: 5000, exe: "/usr/local/bin/router", comm: "router", cmdline: []string{"/usr/local/bin/router", "--config", "/app/config.yaml"}, listen: []int{8801}},
		fakeProc{pid: 101, start: 5100, exe: "/app/router", comm: "router", cmdline: []string{"./router", "--port", "9000"}, listen: []int{9000}},
		fakeProc{pid: 102, start: 5200, exe: "/usr/bin/otelcol", comm: "otelcol", cmdline: []string{"otelcol", "--config", "/app/config.yaml"}, other: []int{8801}},
		fakeProc{pid: 103, start: 5300, exe: "/usr/local/bin/router (deleted)", comm: "router", cmdline: []string{"router"}},
		fakeProc{pid: 104, start: 5400, exe: "/usr/local/bin/router", comm: "router", cmdline: []string{"router", "--canary"}},
		fakeProc{pid: 555, start: 1, exe: "/usr/local/bin/router", comm: "router"}, // the agent itself
	)
	cases := []struct {
		name string
		d    config.Discovery
		want map[int]string // pid -> rule
	}{
		{"executable glob, deleted file still matches, agent excluded",
			config.Discovery{Rules: []config.Rule{{Name: "r", Selector: config.Selector{Executable: "/usr/local/bin/rout*"}}}},
			map[int]string{100: "r", 103: "r", 104: "r"}},
		{"glob star stays within a path element",
			config.Discovery{Rules: []config.Rule{{Name: "r", Selector: config.Selector{Executable: "/usr/*"}}}},
			map[int]string{}},
		{"comm",
			config.Discovery{Rules: []config.Rule{{Name: "c", Selector: config.Selector{Comm: "otel*"}}}},
			map[int]string{102: "c"}},
		{"cmdline regexp over joined arguments",
			config.Discovery{Rules: []config.Rule{{Name: "c", Selector: config.Selector{Cmdline: `--config /app/\S+\.yaml$`}}}},
			map[int]string{100: "c", 102: "c"}},
		{"listening port: held by the process, not merely in its namespace, not established",
			config.Discovery{Rules: []config.Rule{{Name: "p", Selector: config.Selector{Port: 8801}}}},
			map[int]string{100: "p"}},
		{"port in another format (9000) and AND with comm",
			config.Discovery{Rules: []config.Rule{{Name: "p", Selector: config.Selector{Port: 9000, Comm: "router"}}}},
			map[int]string{101: "p"}},
		{"established connection ports do not match",
			config.Discovery{Rules: []config.Rule{{Name: "p", Selector: config.Selector{Port: 7777}}}},
			map[int]string{}},
		{"pid",
			config.Discovery{Rules: []config.Rule{{Name: "one", Selector: config.Selector{PID: 101}}}},
			map[int]string{101: "one"}},
		{"first rule wins, exclusions apply to every rule",
			config.Discovery{
				Rules:   []config.Rule{{Name: "a", Selector: config.Selector{PID: 100}}, {Name: "b", Selector: config.Selector{Comm: "router"}}},
				Exclude: []config.Selector{{Cmdline: "--canary"}, {PID: 103}},
			},
			map[int]string{100: "a", 101: "b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := compiled(t, tc.d)
			got, err := Scan(root, d.Rules, d.Exclude, []string{"global.yaml"}, 555, nil)
			if err != nil {
				t.Fatal(err)
			}
			have := map[int]string{}
			for k, m := range got {
				have[k.PID] = m.Rule
				if m.Proc.PID != k.PID || k.Start == 0 {
					t.Errorf("key %+v for %+v", k, m.Proc)
				}
				if len(m.Probes) != 1 || m.Probes[0] != "global.yaml" {
					t.Errorf("probes %v, want the global ones", m.Probes)
				}
			}
			if fmt.Sprint(have) != fmt.Sprint(tc.want) {
				t.Fatalf("matched %v, want %v", have, tc.want)
			}
		})
	}
}

func TestReadProcessOnFakeProc(t *testing.T) {
	root := fakeProcTree(t, fakeProc{pid: 42, start: 987654, exe: "/app/router", comm: "router", cmdline: []string{"/app/router", "-v"}})
	p, err := ReadProcess(root, 42)
	if err != nil {
		t.Fatal(err)
	}
	if p.StartTime != 987654 || p.Exe != "/app/router" || p.Comm != "router" || strings.Join(p.Cmdline, "|") != "/app/router|-v" {
		t.Fatalf("%+v", p)
	}
	// A containerised process's file is reached through its root.
	if got, want := p.HostExecutable(), filepath.Join(root, "42", "root", "app", "router"); got != want {
		t.Errorf("host executable %s, want %s", got, want)
	}
	p.Exe += deletedSuffix
	if got, want := p.HostExecutable(), filepath.Join(root, "42", "exe"); got != want {
		t.Errorf("deleted: host executable %s, want %s", got, want)
	}
	if _, err := ReadProcess(root, 2); err == nil {
		t.Error("kernel thread (no exe) read as a process")
	}
	if _, err := ReadProcess(root, 43); err == nil {
		t.Error("missing process read")
	}
	for _, bad := range []string{"", "1 (x S 1", "1 (x) S 1 2 3"} {
		if _, err := parseStartTime([]byte(bad)); !errors.Is(err, errBadStat) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestRuleMatchesRealProcess(t *testing.T) {
	// The scanner against the real /proc: this test process, by its
	// executable and by PID, but never when it is the agent.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	d := compiled(t, config.Discovery{Rules: []config.Rule{{Name: "self", Selector: config.Selector{Executable: self}}}})
	got, err := Scan("/proc", d.Rules, nil, []string{"p.yaml"}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for k := range got {
		found = found || k.PID == os.Getpid()
	}
	if !found {
		t.Fatalf("this process not matched by executable %s: %v", self, got)
	}
	got, _ = Scan("/proc", d.Rules, nil, []string{"p.yaml"}, os.Getpid(), nil)
	for k := range got {
		if k.PID == os.Getpid() {
			t.Fatal("the agent's own process was matched")
		}
	}
	// Targets become rules matching the same file.
	rules := config.TargetRules([]config.Target{{Binary: self}, {PID: os.Getppid()}})
	got, _ = Scan("/proc", rules, nil, []string{"p.yaml"}, 0, nil)
	byRule := map[string]bool{}
	for _, m := range got {
		byRule[m.Rule] = true
	}
	if !byRule["binary "+self] || !byRule[fmt.Sprintf("pid %d", os.Getppid())] {
		t.Fatalf("target rules matched %v", byRule)
	}
}

func TestScanCacheFollowsPIDReuse(t *testing.T) {
	root := fakeProcTree(t, fakeProc{pid: 300, start: 10, exe: "/bin/router", comm: "router"})
	d := compiled(t, config.Discovery{Rules: []config.Rule{{Name: "r", Selector: config.Selector{Executable: "/bin/router"}}}})
	cache := Cache{}
	scan := func() map[Key]Match {
		t.Helper()
		got, err := Scan(root, d.Rules, nil, nil, 0, cache)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := scan(); len(got) != 1 || got[Key{PID: 300, Start: 10}].Rule != "r" {
		t.Fatalf("first scan %v", got)
	}
	// The same process renamed (same start time and executable): its name
	// and command line are not read again.
	dir := filepath.Join(root, "300")
	if err := os.WriteFile(filepath.Join(dir, "comm"), []byte("renamed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d2 := compiled(t, config.Discovery{Rules: []config.Rule{{Name: "r", Selector: config.Selector{Comm: "router"}}}})
	if got, _ := Scan(root, d2.Rules, nil, nil, 0, cache); len(got) != 1 {
		t.Fatalf("cached process re-read: %v", got)
	}
	// exec keeps the PID and the start time but changes the executable
	// (a process first seen between fork and exec): read again.
	if err := os.Remove(filepath.Join(dir, "exe")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/bin/other", filepath.Join(dir, "exe")); err != nil {
		t.Fatal(err)
	}
	if got := scan(); len(got) != 0 {
		t.Fatalf("exec'd process matched by its old executable: %v", got)
	}
	if err := os.Remove(filepath.Join(dir, "exe")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/bin/router", filepath.Join(dir, "exe")); err != nil {
		t.Fatal(err)
	}
	if got := scan(); len(got) != 1 {
		t.Fatalf("exec into the router missed: %v", got)
	}
	// The PID reused by a new process (new start time): read afresh, so the
	// new executable no longer matches, and the old entry is pruned.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	writeFakeProc(t, root, fakeProc{pid: 300, start: 99, exe: "/bin/other", comm: "other"})
	if got := scan(); len(got) != 0 {
		t.Fatalf("reused pid matched with stale facts: %v", got)
	}
	if _, ok := cache[Key{PID: 300, Start: 10}]; ok || len(cache) != 1 {
		t.Fatalf("cache %v", cache)
	}
}

func TestPortRuleOnRealProcess(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	d := compiled(t, config.Discovery{Rules: []config.Rule{{Name: "listener", Selector: config.Selector{Port: port}}}})
	got, err := Scan("/proc", d.Rules, nil, []string{"p.yaml"}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("port %d matched %v, want only this process (%d)", port, got, os.Getpid())
	}
	for k := range got {
		if k.PID != os.Getpid() {
			t.Fatalf("port %d matched pid %d, want %d", port, k.PID, os.Getpid())
		}
	}
	ln.Close()
	if got, _ := Scan("/proc", d.Rules, nil, []string{"p.yaml"}, 0, nil); len(got) != 0 {
		t.Fatalf("closed port still matched: %v", got)
	}
}

// TestScanPIDsWaitsForPort: ScanPIDs of this process against a rule with
// a port it does not listen on yet reports it waiting (every other
// selector matches), not found; once it listens, found. A process no
// rule selects whatever it listens on is not waiting.
func TestScanPIDsWaitsForPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	d := compiled(t, config.Discovery{Rules: []config.Rule{
		{Name: "listener", Selector: config.Selector{Comm: "*", Port: port}},
		{Name: "elsewhere", Selector: config.Selector{Executable: "/nonexistent/*"}},
	}})
	self := []int{os.Getpid()}
	found, waiting := ScanPIDs("/proc", self, d.Rules, nil, []string{"p.yaml"}, 0, Cache{})
	if len(found) != 0 || len(waiting) != 1 || waiting[0] != os.Getpid() {
		t.Fatalf("before listening: found %v, waiting %v; want only waiting [%d]", found, waiting, os.Getpid())
	}
	ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Skipf("port %d was taken meanwhile: %v", port, err)
	}
	defer ln.Close()
	found, waiting = ScanPIDs("/proc", self, d.Rules, nil, []string{"p.yaml"}, 0, Cache{})
	if len(found) != 1 || len(waiting) != 0 {
		t.Fatalf("listening: found %v, waiting %v; want found", found, waiting)
	}
	other := compiled(t, config.Discovery{Rules: []config.Rule{{Name: "elsewhere", Selector: config.Selector{Executable: "/nonexistent/*", Port: port}}}})
	if found, waiting := ScanPIDs("/proc", self, other.Rules, nil, nil, 0, Cache{}); len(found) != 0 || len(waiting) != 0 {
		t.Fatalf("a rule whose executable does not match: found %v, waiting %v; want neither", found, waiting)
	}
}
