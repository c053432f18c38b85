package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/routerscope/routerscope/internal/spanname"
	"github.com/routerscope/routerscope/internal/testenv"
)

// TestStdoutExporterGuideConfig runs the agent with the guide's Development
// config (stdout exporter) given through CONFIG_PATH, and checks the JSON
// spans it prints: names, parents, attributes, resource.
func TestStdoutExporterGuideConfig(t *testing.T) {
	testenv.RequireBPF(t, "the end-to-end eBPF test")
	s := startBackends(t)
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	guide := string(testenv.GuideExample(t, "development.yaml"))
	if err := os.WriteFile(cfg, []byte(guide), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout testenv.Buffer
	agent := &proc{name: "routerscope", done: make(chan struct{})}
	agent.cmd = exec.Command(bins.agentBin, "run", "--pid", fmt.Sprint(s.router.cmd.Process.Pid),
		"--probes", filepath.Join(repoRoot(), "config/probes/semantic-router.yaml"),
		"--log-format", "json", "--metrics-listen", "")
	agent.cmd.Env = append(os.Environ(), "CONFIG_PATH="+cfg)
	agent.cmd.Stdout, agent.cmd.Stderr = &stdout, &agent.out
	if err := agent.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { agent.cmd.Wait(); close(agent.done) }()
	t.Cleanup(func() { agent.stop(t) })
	agent.waitFor(t, attachedRE, 60*time.Second)

	resp := s.send(t, chatReq{Model: "auto", Prompt: mathPrompt, ID: "req-stdout"})
	if resp.Status != 200 {
		t.Fatalf("router answered %d", resp.Status)
	}
	// The root returns just after the answer, and the exporter prints a
	// batch at most export.batch_timeout (5s by default) later: wait for the
	// root span on stdout, the last of the request's spans to end.
	rootRE := regexp.MustCompile(`"Name":\s*"` + regexp.QuoteMeta(spanname.Root) + `"`)
	deadline := time.Now().Add(30 * time.Second)
	for !rootRE.MatchString(stdout.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no root span on stdout within 30s:\n%.600s", stdout.String())
		}
		select {
		case <-agent.done:
			t.Fatalf("agent exited before printing the root span:\n%s", tail(agent.Output(), 30))
		case <-time.After(50 * time.Millisecond):
		}
	}
	agent.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-agent.done:
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop on SIGTERM")
	}

	type kv struct {
		Key   string
		Value struct{ Value any }
	}
	type span struct {
		Name        string
		SpanContext struct{ TraceID, SpanID string }
		Parent      struct{ SpanID string }
		Attributes  []kv
		Resource    []kv
	}
	var spans []span
	dec := json.NewDecoder(bytes.NewReader(stdout.Bytes()))
	for {
		var sp span
		err := dec.Decode(&sp)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("stdout is not a stream of JSON spans: %v\n%.600s", err, stdout.String())
		}
		spans = append(spans, sp)
	}
	if len(spans) != 9 {
		t.Fatalf("%d spans on stdout, want 9 (a full request)", len(spans))
	}
	find := func(kvs []kv, key string) any {
		for _, a := range kvs {
			if a.Key == key {
				return a.Value.Value
			}
		}
		return nil
	}
	var root *span
	for i := range spans {
		if spans[i].Name == spanname.Root {
			root = &spans[i]
		}
	}
	if root == nil {
		t.Fatal("no root span on stdout")
	}
	if id := find(root.Attributes, "request.id"); id != "req-stdout" {
		t.Errorf("root request.id = %v", id)
	}
	names := map[string]bool{}
	for _, sp := range spans {
		names[sp.Name] = true
		if sp.SpanContext.TraceID != root.SpanContext.TraceID {
			t.Errorf("%s is in trace %s, not the root's %s", sp.Name, sp.SpanContext.TraceID, root.SpanContext.TraceID)
		}
		if sp.Name != spanname.Root && sp.Parent.SpanID != root.SpanContext.SpanID {
			t.Errorf("%s: parent %s, want the root %s", sp.Name, sp.Parent.SpanID, root.SpanContext.SpanID)
		}
		if svc := find(sp.Resource, "service.name"); svc != "vllm-semantic-router-dev" {
			t.Errorf("%s: service.name = %v", sp.Name, svc)
		}
		if env := find(sp.Resource, "deployment.environment.name"); env != "development" {
			t.Errorf("%s: deployment.environment.name = %v", sp.Name, env)
		}
	}
	for _, want := range stagesFull {
		if !names[want] {
			t.Errorf("no %s span on stdout", want)
		}
	}
	for _, sp := range spans {
		if sp.Name == spanname.Classify {
			if c := find(sp.Attributes, "category.name"); c != "math" {
				t.Errorf("classification category.name = %v", c)
			}
		}
	}
	if strings.Contains(stdout.String(), `"level"`) {
		t.Errorf("log lines leaked into stdout")
	}
}
