package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/routerscope/routerscope/internal/testenv"
)

// binaries are built once per test binary run by TestMain.
var bins struct {
	dir                       string
	router, fakellm, agentBin string
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	flag.Parse()
	if os.Geteuid() != 0 || testing.Short() {
		// Tests skip one by one through requireRoot; nothing to build.
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "routerscope-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/router", "./cmd/fakellm", "./cmd/routerscope")
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build binaries: %v\n%s", err, out)
		return 1
	}
	bins.dir = dir
	bins.router = filepath.Join(dir, "router")
	bins.fakellm = filepath.Join(dir, "fakellm")
	bins.agentBin = filepath.Join(dir, "routerscope")
	return m.Run()
}

func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Dir(wd)
}

// proc is a child process whose combined output is kept for assertions and
// for the failure log.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  testenv.Buffer
	done chan struct{}
}

// Output returns everything the process printed so far.
func (p *proc) Output() string {
	return p.out.String()
}

// start runs a binary; it is stopped with SIGTERM at cleanup and its output
// is logged when the test failed.
func start(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.Dir = repoRoot()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, tail(p.Output(), 60))
		}
	})
	return p
}

// stop sends SIGTERM and waits (SIGKILL after 20 s).
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Errorf("%s did not stop within 20s of SIGTERM; killing it", p.name)
		p.cmd.Process.Kill()
		<-p.done
	}
}

// waitFor polls the output until re matches, returning its first submatch.
func (p *proc) waitFor(t *testing.T, re *regexp.Regexp, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(p.Output()); m != nil {
			if len(m) > 1 {
				return m[1]
			}
			return m[0]
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited while waiting for %q:\n%s", p.name, re, tail(p.Output(), 40))
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("%s: no %q within %s:\n%s", p.name, re, timeout, tail(p.Output(), 40))
	return ""
}

var listenRE = regexp.MustCompile(`"listen":"([^"]+)"`)

// stack is the traced system: fake model server, router, agent.
type stack struct {
	fakellm, router, agent *proc
	routerAddr, llmAddr    string
	// metricsAddr is the agent's /metrics listener (see waitDelivered).
	metricsAddr string
}

// startBackends starts fakellm and the router on ephemeral loopback ports.
func startBackends(t *testing.T, fakellmArgs ...string) *stack {
	t.Helper()
	s := &stack{}
	s.fakellm = start(t, "fakellm", nil, append([]string{bins.fakellm, "--listen", "127.0.0.1:0"}, fakellmArgs...)...)
	s.llmAddr = s.fakellm.waitFor(t, listenRE, 10*time.Second)
	s.router = start(t, "router", nil, bins.router, "--config", "config/router.yaml", "--listen", "127.0.0.1:0", "--backend", s.llmAddr)
	s.routerAddr = s.router.waitFor(t, listenRE, 10*time.Second)
	return s
}

// agentConfig is an agent config exporting over OTLP to endpoint.
func agentConfig(t *testing.T, endpoint string) string {
	t.Helper()
	return writeAgentConfig(t, endpoint, "5s", "")
}

// writeAgentConfig writes an agent config exporting over OTLP to endpoint
// (with the exporter's timeout) with the semantic router's probes;
// routerscope is appended to its routerscope section, after
// export.batch_timeout, and is indented to fit there.
func writeAgentConfig(t *testing.T, endpoint, timeout, routerscope string) string {
	t.Helper()
	cfg := fmt.Sprintf(`observability:
  tracing:
    enabled: true
    provider: "opentelemetry"
    exporter:
      type: "otlp"
      endpoint: %q
      insecure: true
      timeout: %s
    sampling:
      type: "always_on"
    resource:
      service_name: "vllm-semantic-router"
      service_version: "v0.1.0"
      deployment_environment: "e2e"
routerscope:
  probes: [%q]
  export:
    batch_timeout: 200ms
`, endpoint, timeout, filepath.Join(repoRoot(), "config/probes/semantic-router.yaml")) + routerscope
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

var attachedRE = regexp.MustCompile(`"msg":"attached"`)

// attachAgent starts the agent on the router's PID, serving /metrics on
// an ephemeral port, and waits until it has attached.
func (s *stack) attachAgent(t *testing.T, configPath string, extra ...string) {
	t.Helper()
	args := append([]string{bins.agentBin, "run", "--pid", fmt.Sprint(s.router.cmd.Process.Pid),
		"--config", configPath, "--log-format", "json", "--metrics-listen", "127.0.0.1:0"}, extra...)
	s.agent = start(t, "routerscope", nil, args...)
	s.metricsAddr = s.agent.waitFor(t, metricsAddrRE, 30*time.Second)
	s.agent.waitFor(t, attachedRE, 60*time.Second)
}

// chatReq is one request the tests send.
type chatReq struct {
	Name    string
	Model   string
	Prompt  string
	Stream  bool
	ID      string // x-request-id
	User    string
	Session string
}

// chatResp is what the router answered.
type chatResp struct {
	Status  int
	Headers http.Header
	Body    string
}

var client = &http.Client{Timeout: 30 * time.Second}

func (s *stack) send(t *testing.T, r chatReq) chatResp {
	t.Helper()
	resp, err := s.trySend(r)
	if err != nil {
		t.Fatalf("%s: %v", r.Name, err)
	}
	return resp
}

func (s *stack) trySend(r chatReq) (chatResp, error) {
	body, _ := json.Marshal(map[string]any{
		"model":    r.Model,
		"stream":   r.Stream,
		"messages": []map[string]string{{"role": "user", "content": r.Prompt}},
	})
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost,
		"http://"+s.routerAddr+"/v1/chat/completions", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if r.ID != "" {
		req.Header.Set("x-request-id", r.ID)
	}
	if r.User != "" {
		req.Header.Set("x-user-id", r.User)
	}
	if r.Session != "" {
		req.Header.Set("x-session-id", r.Session)
	}
	resp, err := client.Do(req)
	if err != nil {
		return chatResp{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return chatResp{}, err
	}
	return chatResp{Status: resp.StatusCode, Headers: resp.Header, Body: string(b)}, nil
}

func tail(s string, lines int) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var all []string
	for sc.Scan() {
		all = append(all, sc.Text())
	}
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
