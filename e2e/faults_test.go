package e2e

import (
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/routerscope/routerscope/internal/collectortest"
	"github.com/routerscope/routerscope/internal/otlptest"
	"github.com/routerscope/routerscope/internal/spanname"
	"github.com/routerscope/routerscope/internal/testenv"
)

// The fault suite (issue 14): each TestFault* injects one fault while the
// router serves and prints its figures as "FAULT ..." lines; `make faults`
// (part of `make test`) runs them verbosely and shows those lines.

// figure logs one measured figure of the fault suite.
func figure(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Logf("FAULT %s: %s", t.Name(), fmt.Sprintf(format, args...))
}

// load sends requests with unique prompts every interval until stopped,
// counting the router's failures: a fault of the tracing must never be
// one of the router's.
type load struct {
	sent, failed atomic.Int64
	stop         chan struct{}
	wg           sync.WaitGroup
}

func startLoad(s *stack, prefix string, interval time.Duration) *load {
	l := &load{stop: make(chan struct{})}
	l.wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			case <-time.After(interval):
			}
			resp, err := s.trySend(chatReq{Model: "auto", Prompt: fmt.Sprintf("%s (%s %d)", codePrompt, prefix, i), ID: fmt.Sprintf("%s-%d", prefix, i)})
			l.sent.Add(1)
			if err != nil || resp.Status != 200 {
				l.failed.Add(1)
			}
		}
	})
	return l
}

func (l *load) end() {
	close(l.stop)
	l.wg.Wait()
}

// rssKB is a process's resident memory.
func rssKB(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

var stoppedRE = regexp.MustCompile(`"msg":"stopped".*`)

// stoppedField is a counter of the agent's final log line.
func stoppedField(line, key string) int {
	m := regexp.MustCompile(`"` + key + `":(\d+)`).FindStringSubmatch(line)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestFaultCollectorOutageUnderLoad: the collector is down for 20 s while
// the router serves 20 requests a second, then comes back.
func TestFaultCollectorOutageUnderLoad(t *testing.T) {
	testenv.RequireBPF(t, "the end-to-end eBPF test")
	recv, listen, stopCollector := stoppablePipeline(t)
	s := startBackends(t)
	s.attachAgent(t, agentConfig(t, listen))
	agentPID := s.agent.cmd.Process.Pid

	l := startLoad(s, "outage", 50*time.Millisecond)
	time.Sleep(3 * time.Second)
	rssBefore := rssKB(t, agentPID)
	stopCollector()
	down := time.Now()
	const outage = 20 * time.Second
	time.Sleep(outage)
	rssDuring := rssKB(t, agentPID)
	if ep := s.agent.waitFor(t, exportErrRE, time.Second); ep != listen {
		t.Errorf("export error names %q, want %q", ep, listen)
	}
	collectortest.Start(t, listen, recv.Endpoint())
	up := time.Now()
	l.end()

	// Resume: the first span of a request sent after the collector came
	// back.
	var resumed time.Duration
	for i := 0; time.Since(up) < 60*time.Second; i++ {
		s.trySend(chatReq{Model: "auto", Prompt: fmt.Sprintf("%s (after %d)", mathPrompt, i), ID: fmt.Sprintf("after-%d", i)})
		found := false
		for _, sp := range recv.Spans() {
			if strings.HasPrefix(attrString(sp, "request.id"), "after-") {
				found = true
				break
			}
		}
		if found {
			resumed = time.Since(up)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if resumed == 0 {
		t.Fatal("export did not resume within 60 s")
	}
	rssAfter := rssKB(t, agentPID)
	s.agent.stop(t)
	final := stoppedRE.FindString(s.agent.Output())
	figure(t, "router: %d requests during a %v outage, %d failed", l.sent.Load(), outage.Round(time.Second), l.failed.Load())
	figure(t, "agent RSS: %d kB before, %d kB at the end of the outage, %d kB after", rssBefore, rssDuring, rssAfter)
	figure(t, "export resumed %v after the collector came back (reconnect_backoff 5s)", resumed.Round(time.Millisecond))
	figure(t, "spans: %d exported, %d failed in export, %d dropped (queue full), %d received", stoppedField(final, "spans_exported"),
		stoppedField(final, "spans_export_failed"), stoppedField(final, "spans_dropped_queue_full"), len(recv.Spans()))
	_ = down
	if l.failed.Load() != 0 {
		t.Errorf("%d router requests failed during the outage", l.failed.Load())
	}
	if resumed > 10*time.Second {
		t.Errorf("export resumed after %v, want within the 5 s reconnect backoff (+ jitter and a batch)", resumed)
	}
	if rssDuring > rssBefore+64<<10 {
		t.Errorf("agent RSS grew from %d to %d kB during the outage", rssBefore, rssDuring)
	}
}

// bpfObjects lists the BPF programs, maps and links a process holds,
// from its file descriptors' fdinfo.
func bpfObjects(t *testing.T, pid int) map[string][]string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	seen := map[string]bool{}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			for _, kind := range []string{"prog_id", "map_id", "link_id"} {
				if v, ok := strings.CutPrefix(line, kind+":"); ok {
					id := strings.TrimSpace(v)
					if !seen[kind+id] {
						seen[kind+id] = true
						out[kind] = append(out[kind], id)
					}
				}
			}
		}
	}
	return out
}

// runCmd runs a command and returns its output.
func runCmd(name string, args ...string) (string, error) {
	out, err := osexec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// bpfObjectExists asks the kernel whether a program, map or link id is
// still loaded.
func bpfObjectExists(kind, id string) bool {
	obj := map[string]string{"prog_id": "prog", "map_id": "map", "link_id": "link"}[kind]
	out, err := runCmd("bpftool", obj, "show", "id", id)
	return err == nil && strings.TrimSpace(out) != ""
}

// TestFaultAgentKilled: kill -9 of the agent leaves no program, map or
// link of its behind, the router keeps serving, and a new agent attaches
// cleanly and traces.
func TestFaultAgentKilled(t *testing.T) {
	testenv.RequireBPF(t, "the end-to-end eBPF test")
	testenv.RequireTool(t, "bpftool", "bpftool")
	recv, collector := pipeline(t)
	s := startBackends(t)
	cfg := agentConfig(t, collector)
	s.attachAgent(t, cfg)
	s.send(t, chatReq{Model: "auto", Prompt: mathPrompt, ID: "before-kill"})
	objs := bpfObjects(t, s.agent.cmd.Process.Pid)
	if len(objs["prog_id"]) == 0 || len(objs["link_id"]) == 0 {
		t.Fatalf("agent holds no BPF objects? %v", objs)
	}
	if err := s.agent.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.agent.done
	killed := time.Now()
	// The kernel frees them when the last reference goes: allow it a
	// moment (uprobe unregistration waits for an RCU grace period).
	left := map[string]int{}
	for time.Since(killed) < 30*time.Second {
		left = map[string]int{}
		for kind, ids := range objs {
			for _, id := range ids {
				if bpfObjectExists(kind, id) {
					left[kind]++
				}
			}
		}
		if len(left) == 0 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	freed := time.Since(killed)
	if r := s.send(t, chatReq{Model: "auto", Prompt: codePrompt, ID: "after-kill"}); r.Status != 200 {
		t.Errorf("router answered %d after the agent's kill -9", r.Status)
	}
	s.attachAgent(t, cfg)
	s.send(t, chatReq{Model: "auto", Prompt: histPrompt, ID: "new-agent"})
	deadline := time.Now().Add(30 * time.Second)
	traced := false
	for !traced && time.Now().Before(deadline) {
		for _, sp := range recv.Spans() {
			if attrString(sp, "request.id") == "new-agent" {
				traced = true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	figure(t, "agent held %d programs, %d maps, %d links; after kill -9 left: %v (checked for %v)",
		len(objs["prog_id"]), len(objs["map_id"]), len(objs["link_id"]), left, freed.Round(time.Millisecond))
	figure(t, "a new agent attached and traced: %v", traced)
	if len(left) != 0 {
		t.Errorf("BPF objects left after kill -9: %v", left)
	}
	if !traced {
		t.Error("the new agent's spans did not arrive")
	}
}

// TestFaultTargetKilled: the router is killed with -9 in the middle of a
// request; `run --pid` exports what finished, notices the exit at once
// and exits 0.
func TestFaultTargetKilled(t *testing.T) {
	testenv.RequireBPF(t, "the end-to-end eBPF test")
	recv, collector := pipeline(t)
	s := startBackends(t, "--latency", "3s")
	s.attachAgent(t, agentConfig(t, collector))
	sentAt := time.Now()
	go s.trySend(chatReq{Model: "auto", Prompt: bookPrompt, ID: "killed-mid-request"})
	// Killed while the request waits for the model server (3 s): its
	// upstream span is open in the kernel.
	testenv.Eventually(t, "the request's upstream call to start", func() bool {
		v, ok := testenv.Metric(testenv.Scrape(t, s.metricsAddr), "routerscope_kernel_spans_opened_total", "probe="+spanname.Upstream)
		return ok && v >= 1
	})
	if err := s.router.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	select {
	case <-s.agent.done:
	case <-time.After(20 * time.Second):
		t.Fatal("run --pid still running 20 s after its target was killed")
	}
	exitedIn := time.Since(killedAt)
	code := s.agent.cmd.ProcessState.ExitCode()
	// Spans of stages that returned before the kill arrive; those still
	// open at the kill (the root, the upstream call in flight) live only
	// in the kernel's maps: the agent takes them from there when it
	// notices the exit and ends them failed at the exit time.
	var root *otlptest.Span
	finished := 0
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		finished = 0
		for _, sp := range recv.Spans() {
			if attrString(sp, "request.id") == "killed-mid-request" || sp.Name != spanname.Root {
				finished++
			}
			// The root's request.id is a result: an open root has none,
			// so it is the one root started after the request was sent.
			if sp.Name == spanname.Root && sp.StartTimeUnixNano >= uint64(sentAt.UnixNano()) {
				root = &sp
			}
		}
		if root != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	figure(t, "agent exited %d, %v after the kill; %d spans of the killed request's finished stages arrived",
		code, exitedIn.Round(time.Millisecond), finished)
	if code != 0 {
		t.Errorf("agent exit code %d", code)
	}
	if exitedIn > 5*time.Second {
		t.Errorf("agent exited %v after its target's kill", exitedIn)
	}
	if finished == 0 {
		t.Error("no span of the stages finished before the kill arrived")
	}
	if root == nil {
		t.Fatal("the killed request's root span did not arrive (it was open in the kernel when the router died)")
	}
	dur := time.Duration(root.EndTimeUnixNano - root.StartTimeUnixNano)
	figure(t, "killed request's root span: %v (request ran %v before the kill), status %q",
		dur.Round(time.Millisecond), killedAt.Sub(sentAt).Round(time.Millisecond), root.Status.GetMessage())
	if !strings.Contains(root.Status.GetMessage(), "process exited") {
		t.Errorf("status %q", root.Status.GetMessage())
	}
	wantStatus(t, *root, true)
	if len(root.ParentSpanId) != 0 {
		t.Errorf("root span has parent %x", root.ParentSpanId)
	}
	if dur > killedAt.Sub(sentAt)+500*time.Millisecond {
		t.Errorf("span lasted %v; the request was killed after %v", dur, killedAt.Sub(sentAt))
	}
	// The upstream call (3 s backend latency) was in flight at the kill:
	// it arrives too, under the root, ended the same way.
	var up *otlptest.Span
	for _, sp := range recv.Spans() {
		if sp.Name == spanname.Upstream && string(sp.TraceId) == string(root.TraceId) {
			up = &sp
		}
	}
	if up == nil {
		t.Fatal("the killed request's in-flight upstream span did not arrive")
	}
	figure(t, "killed request's in-flight upstream span: %v, status %q",
		time.Duration(up.EndTimeUnixNano-up.StartTimeUnixNano).Round(time.Millisecond), up.Status.GetMessage())
	if string(up.ParentSpanId) != string(root.SpanId) {
		t.Errorf("upstream span's parent %x, want the root %x", up.ParentSpanId, root.SpanId)
	}
	if !strings.Contains(up.Status.GetMessage(), "process exited") {
		t.Errorf("upstream status %q", up.Status.GetMessage())
	}
	wantStatus(t, *up, true)
}

// TestFaultBrokenReloads: while the router serves, each kind of broken
// config is saved and SIGHUP sent: each is refused, the running config
// and the attachment stay, and spans keep arriving.
func TestFaultBrokenReloads(t *testing.T) {
	testenv.RequireBPF(t, "the end-to-end eBPF test")
	recv, collector := pipeline(t)
	s := startBackends(t)
	cfgPath := agentConfig(t, collector)
	good, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	s.attachAgent(t, cfgPath)
	dir := t.TempDir()
	missingSym := filepath.Join(dir, "missing-symbol.yaml")
	if err := os.WriteFile(missingSym, []byte("probes:\n  - {symbol: main.NoSuchFunction, span: nope}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	withProbe := func(p string) string {
		return strings.Replace(string(good), filepath.Join(repoRoot(), "config/probes/semantic-router.yaml"), p, 1)
	}
	broken := map[string]string{
		"yaml syntax":     string(good) + "  bad: [\n",
		"unknown key":     string(good) + "  bogus: 1\n",
		"rate nan":        strings.Replace(string(good), `type: "always_on"`, "type: probabilistic\n      rate: .nan", 1),
		"huge queue":      strings.Replace(string(good), "  export:\n", "  export:\n    queue_size: 2000000000\n", 1),
		"missing probes":  withProbe(filepath.Join(dir, "nope.yaml")),
		"missing symbol":  withProbe(missingSym),
		"endless file":    "",
		"probe not valid": withProbe(cfgPath),
	}
	l := startLoad(s, "reload", 100*time.Millisecond)
	defer l.end()
	refusedRE := regexp.MustCompile(`"msg":"config reload refused`)
	for name, body := range broken {
		before := len(refusedRE.FindAllString(s.agent.Output(), -1))
		if name == "endless file" {
			os.Remove(cfgPath)
			if err := os.Symlink("/dev/zero", cfgPath); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(cfgPath+".tmp", []byte(body), 0o644); err != nil {
			t.Fatal(err)
		} else if err := os.Rename(cfgPath+".tmp", cfgPath); err != nil {
			t.Fatal(err)
		}
		s.agent.cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(15 * time.Second)
		for len(refusedRE.FindAllString(s.agent.Output(), -1)) <= before && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		refused := len(refusedRE.FindAllString(s.agent.Output(), -1)) > before
		n := len(recv.Spans())
		sentBefore := l.sent.Load()
		for time.Now().Before(deadline) && (len(recv.Spans()) == n || l.sent.Load() == sentBefore) {
			time.Sleep(50 * time.Millisecond)
		}
		flowing := len(recv.Spans()) > n
		figure(t, "%-16s refused=%v spans still flowing=%v", name, refused, flowing)
		if !refused {
			t.Errorf("%s: not refused", name)
		}
		if !flowing {
			t.Errorf("%s: spans stopped", name)
		}
		os.Remove(cfgPath)
		if err := os.WriteFile(cfgPath, good, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Contains(s.agent.Output(), `"msg":"detached"`) {
		t.Error("the agent detached for a refused config")
	}
	figure(t, "router: %d requests, %d failed", l.sent.Load(), l.failed.Load())
	if l.failed.Load() != 0 {
		t.Errorf("%d router requests failed", l.failed.Load())
	}
}

// TestFaultCollectorFlapping: the collector goes down and comes back three
// times, 4 s each way, under load: the router is unaffected and after
// each return export resumes.
func TestFaultCollectorFlapping(t *testing.T) {
	testenv.RequireBPF(t, "the end-to-end eBPF test")
	recv, listen, stop := stoppablePipeline(t)
	s := startBackends(t)
	s.attachAgent(t, agentConfig(t, listen))
	l := startLoad(s, "flap", 50*time.Millisecond)
	var resumes []string
	for round := range 3 {
		stop()
		time.Sleep(4 * time.Second)
		stop = collectortest.Start(t, listen, recv.Endpoint())
		up, n := time.Now(), len(recv.Spans())
		for len(recv.Spans()) == n && time.Since(up) < 30*time.Second {
			time.Sleep(50 * time.Millisecond)
		}
		if len(recv.Spans()) == n {
			t.Fatalf("round %d: export did not resume within 30 s", round)
		}
		resumes = append(resumes, time.Since(up).Round(time.Millisecond).String())
		time.Sleep(4 * time.Second)
	}
	l.end()
	figure(t, "router: %d requests over 3 outages of 4 s, %d failed", l.sent.Load(), l.failed.Load())
	figure(t, "export resumed after each return in %s", strings.Join(resumes, ", "))
	if l.failed.Load() != 0 {
		t.Errorf("%d router requests failed", l.failed.Load())
	}
}

// sumPID sums the series of name whose pid label is pid (over probes).
func sumPID(fams map[string]*dto.MetricFamily, name string, pid int) float64 {
	var sum float64
	for labels, v := range series(fams, name) {
		for _, l := range strings.Split(labels, ",") {
			if l == "pid="+strconv.Itoa(pid) {
				sum += v
			}
		}
	}
	return sum
}

var ringLostLogRE = regexp.MustCompile(`"msg":"kernel ring buffer dropped events".*?"lost_events":(\d+)`)

// TestFaultRingBufferBurst: with the smallest ring buffer the agent
// accepts (one page), bursts of concurrent requests overflow it. The
// router serves every request; the kernel counts the dropped records
// and the agent logs them; every record lost is a whole span gone (one
// record per span, sent at return), so the spans received plus the
// records lost are exactly the spans the requests produced, a child
// whose parent's record was lost arrives pointing at that missing parent
// (never more missing parents than records lost), nothing is left open
// or ended by the agent; and a later request traces fully.
func TestFaultRingBufferBurst(t *testing.T) {
	testenv.RequireBPF(t, "the end-to-end eBPF test")
	recv, collector := pipeline(t)
	s := startBackends(t)
	ring := os.Getpagesize()
	cfgPath := agentConfig(t, collector)
	f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "  kernel:\n    ring_buffer_bytes: %d\n", ring)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	s.attachAgent(t, cfgPath)
	metricsAddr := s.metricsAddr
	pid := s.router.cmd.Process.Pid
	began := time.Now()

	// Bursts of concurrent requests until the kernel reports a loss (the
	// first nearly always does; a loaded machine's scheduler decides).
	const perBurst, maxBursts = 200, 5
	var sent, failed, wantSpans int
	var lost float64
	bursts := 0
	for bursts < maxBursts && lost == 0 {
		var mu sync.Mutex
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for i := range perBurst {
			wg.Go(func() {
				<-gate
				r := chatReq{Model: "auto", Prompt: fmt.Sprintf("%s (burst %d request %d)", codePrompt, bursts, i), ID: fmt.Sprintf("burst-%d-%d", bursts, i)}
				resp, err := s.trySend(r)
				mu.Lock()
				defer mu.Unlock()
				sent++
				switch {
				case err != nil || resp.Status != 200:
					failed++
				case resp.Headers.Get("x-vsr-cache-hit") == "true":
					wantSpans += 5 // request, classification, PII, jailbreak, cache
				default:
					wantSpans += 9 // every stage
				}
			})
		}
		close(gate)
		wg.Wait()
		bursts++
		lost = sumPID(testenv.Scrape(t, metricsAddr), "routerscope_kernel_records_lost_total", pid)
	}
	burstTook := time.Since(began)
	if failed != 0 {
		t.Fatalf("the router failed %d of %d requests of the burst", failed, sent)
	}
	if lost == 0 {
		t.Fatalf("%d bursts of %d requests did not overflow a %d-byte ring buffer", bursts, perBurst, ring)
	}

	// Settle: the kernel closed every span the requests produced, the
	// agent read what the ring kept, counted the loss and exported the
	// rest, and the receiver has it.
	var fams map[string]*dto.MetricFamily
	var closed, opened, emitted, counted, exported float64
	settled := false
	deadline := time.Now().Add(30 * time.Second)
	for !settled && time.Now().Before(deadline) {
		fams = testenv.Scrape(t, metricsAddr)
		opened = sumPID(fams, "routerscope_kernel_spans_opened_total", pid)
		closed = sumPID(fams, "routerscope_kernel_spans_closed_total", pid)
		emitted = sumPID(fams, "routerscope_kernel_records_emitted_total", pid)
		lost = sumPID(fams, "routerscope_kernel_records_lost_total", pid)
		counted, _ = testenv.Metric(fams, "routerscope_ringbuf_lost_events_total")
		exported, _ = testenv.Metric(fams, "routerscope_spans_exported_total")
		settled = closed == float64(wantSpans) && emitted+lost == closed && counted == lost &&
			exported == emitted && len(recv.Spans()) == int(emitted)
		if !settled {
			time.Sleep(100 * time.Millisecond)
		}
	}
	spans := recv.Spans()
	figure(t, "ring buffer %d bytes: %d bursts of %d concurrent requests in %v, %d failed",
		ring, bursts, perBurst, burstTook.Round(time.Millisecond), failed)
	figure(t, "spans: %d produced by the requests, kernel opened %.0f closed %.0f emitted %.0f lost %.0f; agent counted %.0f lost, exported %.0f; %d received",
		wantSpans, opened, closed, emitted, lost, counted, exported, len(spans))
	if !settled {
		t.Errorf("the numbers did not add up within 30 s: want received (%d) + lost (%.0f) = produced (%d) = kernel closed (%.0f) = opened (%.0f), emitted (%.0f) = exported (%.0f), agent's lost count (%.0f) = kernel's",
			len(spans), lost, wantSpans, closed, opened, emitted, exported, counted)
	}
	if opened != closed {
		t.Errorf("kernel opened %.0f spans and closed %.0f: spans left open", opened, closed)
	}

	// Logged: the warnings' counts add up to the loss.
	var logged int
	for _, m := range ringLostLogRE.FindAllStringSubmatch(s.agent.Output(), -1) {
		n, _ := strconv.Atoi(m[1])
		logged += n
	}
	figure(t, "agent log: %d lost records in %d warnings", logged, len(ringLostLogRE.FindAllString(s.agent.Output(), -1)))
	if float64(logged) != lost {
		t.Errorf("the agent logged %d lost records, the kernel counted %.0f", logged, lost)
	}

	// Consistent: no span twice, none ended by the agent or failed, and
	// every missing parent is a lost record.
	ids := map[string]bool{}
	roots := map[string]bool{}
	dups, failedSpans, badTimes := 0, 0, 0
	for _, sp := range spans {
		if ids[sp.SpanIDHex()] {
			dups++
		}
		ids[sp.SpanIDHex()] = true
		if len(sp.ParentSpanId) == 0 {
			roots[sp.TraceIDHex()] = true
		}
		if sp.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR {
			failedSpans++
		}
		if sp.EndTimeUnixNano < sp.StartTimeUnixNano || sp.StartTimeUnixNano == 0 {
			badTimes++
		}
	}
	missingParents, orphans := map[string]bool{}, 0
	rootless := map[string]bool{}
	for _, sp := range spans {
		if len(sp.ParentSpanId) != 0 && !ids[sp.ParentIDHex()] {
			orphans++
			missingParents[sp.ParentIDHex()] = true
		}
		if !roots[sp.TraceIDHex()] {
			rootless[sp.TraceIDHex()] = true
		}
	}
	unfinished := series(fams, "routerscope_spans_unfinished_total")
	var agentEnded float64
	for _, v := range unfinished {
		agentEnded += v
	}
	figure(t, "received: %d traces with their root, %d without (root record lost); %d spans whose parent was lost, %d distinct missing parents (<= %.0f lost)",
		len(roots), len(rootless), orphans, len(missingParents), lost)
	figure(t, "received: %d duplicate span ids, %d failed, %d with bad times; %.0f ended by the agent %v",
		dups, failedSpans, badTimes, agentEnded, unfinished)
	if float64(len(missingParents)) > lost || float64(len(rootless)) > lost {
		t.Errorf("%d missing parents and %d traces without a root, but only %.0f records lost", len(missingParents), len(rootless), lost)
	}
	if dups != 0 || failedSpans != 0 || badTimes != 0 || agentEnded != 0 {
		t.Errorf("inconsistent spans: %d duplicates, %d failed, %d with bad times, %.0f ended by the agent", dups, failedSpans, badTimes, agentEnded)
	}

	// Still working: a later request traces fully (9 spans, one tree).
	// A request's records fit the ring many times over; should a loaded
	// machine still overflow it, another request is tried.
	var traced bool
	var tries int
	for tries = 1; tries <= 3 && !traced; tries++ {
		id := fmt.Sprintf("after-burst-%d", tries)
		before := len(recv.Spans())
		resp := s.send(t, chatReq{Model: "auto", Prompt: fmt.Sprintf("%s (after the burst %d)", histPrompt, tries), ID: id})
		want := 9
		if resp.Headers.Get("x-vsr-cache-hit") == "true" {
			want = 5
		}
		deadline := time.Now().Add(15 * time.Second)
		for !traced && time.Now().Before(deadline) {
			all := recv.Spans()
			var tid string
			for _, sp := range all[before:] {
				if sp.Name == spanname.Root && attrString(sp, "request.id") == id {
					tid = sp.TraceIDHex()
				}
			}
			if tid != "" {
				in := map[string]bool{}
				var trace []otlptest.Span
				for _, sp := range all[before:] {
					if sp.TraceIDHex() == tid {
						in[sp.SpanIDHex()] = true
						trace = append(trace, sp)
					}
				}
				whole := len(trace) == want
				for _, sp := range trace {
					if len(sp.ParentSpanId) != 0 && !in[sp.ParentIDHex()] {
						whole = false
					}
				}
				traced = whole
			}
			if !traced {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	figure(t, "after the burst: a request traced fully: %v (request %d)", traced, tries-1)
	if !traced {
		t.Error("no later request traced fully after the burst")
	}
	if took := time.Since(began); took > 60*time.Second {
		t.Errorf("the fault took %v, want under 60 s", took)
	}
}
