package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/routerscope/routerscope/internal/testenv"
	"github.com/routerscope/routerscope/probes"
)

// BenchmarkPropagation measures a chat request through the router (semantic
// cache off, so every request goes upstream) with no tracer, with the
// capture engine alone, with traceparent extraction, and with extraction
// and injection: the differences are what each half costs per request.
// Extraction costs one uprobe hit per request header line (and per header
// line of the upstream response), injection three uprobe hits and an sk_msg
// run per upstream write.
func BenchmarkPropagation(b *testing.B) {
	testenv.RequireBPF(b, "the end-to-end eBPF benchmark")
	llmAddr := benchStart(b, bins.fakellm, "--listen", "127.0.0.1:0")
	routerAddr := benchStart(b, bins.router, "--config", noCacheConfig(b), "--listen", "127.0.0.1:0", "--backend", llmAddr)
	spec, err := probes.LoadSpec(filepath.Join(repoRoot(), "config/probes/semantic-router.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	bin, err := probes.OpenBinary(bins.router)
	if err != nil {
		b.Fatal(err)
	}
	defer bin.Close()
	prog, err := probes.Resolve(bin, spec)
	if err != nil {
		b.Fatal(err)
	}
	pid := benchPIDs[routerAddr]
	headers := map[string]string{"traceparent": traceparent(callerTrace, callerSpan, "01"), "tracestate": "vendor=x"}
	cases := []struct {
		name   string
		attach bool
		prop   probes.Propagation
	}{
		{"no-tracer", false, probes.Propagation{}},
		{"capture", true, probes.Propagation{}},
		{"extract", true, probes.Propagation{Extract: true}},
		{"extract+inject", true, probes.Propagation{Extract: true, Inject: true}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if c.attach {
				opts := probes.DefaultOptions()
				opts.Propagation = c.prop
				tr, err := probes.Attach(b.Context(), prog, pid, opts)
				if err != nil {
					b.Fatal(err)
				}
				drained := make(chan struct{})
				go func() {
					defer close(drained)
					for {
						if _, err := tr.Read(context.Background()); errors.Is(err, probes.ErrClosed) {
							return
						}
					}
				}()
				defer func() { tr.Close(); <-drained }()
			}
			c, err := net.DialTimeout("tcp", routerAddr, 5*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			body := fmt.Sprintf(`{"model":"auto","messages":[{"role":"user","content":%q}]}`, mathPrompt)
			var req strings.Builder
			fmt.Fprintf(&req, "POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", len(body))
			for n, v := range headers {
				fmt.Fprintf(&req, "%s: %s\r\n", n, v)
			}
			msg := []byte(req.String() + "\r\n" + body)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d: %v", resp.StatusCode, err)
				}
			}
		})
	}
}

// benchPIDs maps a started process's listen address to its pid.
var benchPIDs = map[string]int{}

// benchStart runs a binary until the benchmark ends and returns the address
// it logged as listening (the e2e helpers take a *testing.T).
func benchStart(b *testing.B, args ...string) string {
	b.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = repoRoot()
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { cmd.Process.Kill(); wg.Wait(); cmd.Wait() })
	addr := make(chan string, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case a := <-addr:
		benchPIDs[a] = cmd.Process.Pid
		return a
	case <-time.After(10 * time.Second):
		b.Fatalf("%s logged no listen address within 10s", args[0])
		return ""
	}
}

// noCacheConfig writes config/router.yaml with the semantic cache off.
func noCacheConfig(b *testing.B) string {
	b.Helper()
	cfg, err := os.ReadFile(filepath.Join(repoRoot(), "config/router.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "router.yaml")
	out := strings.Replace(string(cfg), "semantic_cache:\n  enabled: true", "semantic_cache:\n  enabled: false", 1)
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}
