package e2e

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/routerscope/routerscope/internal/spanname"
	"github.com/routerscope/routerscope/internal/testenv"
)

// TestRootEndsAtFinishRequest checks the shipped root's end_at: the root
// span (serveChat, no RET uprobe) ends at net/http's finishRequest, which
// the connection's goroutine runs right after the handler returned. On a
// keep-alive connection with a pause between requests, a root that ended
// late (at the next request's start, or at expiry) would span the pause;
// one that ended early would not cover its upstream span or would miss
// the Outcome fields serveChat sets last. Every root closes finished
// (none abandoned), and the end_at uprobe fires once per request.
func TestRootEndsAtFinishRequest(t *testing.T) {
	testenv.RequireBPF(t, "the end-to-end eBPF test")
	recv, collector := pipeline(t)
	s := startBackends(t)
	s.attachAgent(t, agentConfig(t, collector))

	const pause = 400 * time.Millisecond
	k := dialKeepAlive(t, s.routerAddr)
	ids := []string{"ka-1", "ka-2", "ka-3"}
	// Prompts far apart, so no answer comes from the semantic cache.
	prompts := []string{mathPrompt, codePrompt, bookPrompt}
	for i, id := range ids {
		if i > 0 {
			time.Sleep(pause)
		}
		body := fmt.Sprintf(`{"model":"auto","messages":[{"role":"user","content":%q}]}`, prompts[i])
		if resp := k.do(t, http.MethodPost, "/v1/chat/completions", body, map[string]string{"x-request-id": id}); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", id, resp.StatusCode)
		}
	}
	// A streamed answer on its own connection: the root covers the stream.
	stream := s.send(t, chatReq{Name: "stream", Model: "auto", Prompt: histPrompt, Stream: true, ID: "ka-stream"})
	// A rejected request (405): serveChat returns early, the root still
	// ends at finishRequest with the status it wrote.
	if resp := k.do(t, http.MethodGet, "/v1/chat/completions", "", map[string]string{"x-request-id": "ka-405"}); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET chat: status %d", resp.StatusCode)
	}
	trees := byRequestID(t, buildTrees(t, waitSpans(t, recv, s.metricsAddr, 3*9+9+1)))

	for _, id := range append(ids, "ka-stream") {
		tr := trees[id]
		if tr == nil {
			t.Errorf("%s: no trace", id)
			continue
		}
		tr.checkStages(t, stagesFull)
		root, up := tr.root, tr.child(t, spanname.Upstream)
		d := time.Duration(root.EndTimeUnixNano - root.StartTimeUnixNano)
		if d <= 0 || d >= pause/2 {
			t.Errorf("%s: root lasts %v: it did not end when its request finished (the pause to the next request is %v)", id, d, pause)
		}
		if root.EndTimeUnixNano < up.EndTimeUnixNano {
			t.Errorf("%s: root ends %v before its upstream span", id, time.Duration(up.EndTimeUnixNano-root.EndTimeUnixNano))
		}
		wantInt(t, root, "http.status_code", 200)
		wantStr(t, root, "request.id", id)
		wantStr(t, root, "routing.selected_model", str(t, up, "model.name"))
		wantStatus(t, root, false)
	}
	if tr := trees["ka-stream"]; tr != nil {
		wantStr(t, tr.root, "routing.selected_model", stream.Headers.Get("x-vsr-selected-model"))
	}
	if tr := trees["ka-405"]; tr == nil {
		t.Errorf("ka-405: no trace")
	} else {
		wantInt(t, tr.root, "http.status_code", 405)
		if len(tr.all) != 1 {
			t.Errorf("ka-405: %d spans, want the root alone", len(tr.all))
		}
	}

	pid := "pid=" + strconv.Itoa(s.router.cmd.Process.Pid)
	root := "probe=" + spanname.Root
	n := float64(len(ids) + 2)
	waitMetrics(t, s.metricsAddr, 10*time.Second,
		metricCheck{"routerscope_kernel_spans_opened_total", []string{pid, root}, n},
		metricCheck{"routerscope_kernel_spans_closed_total", []string{pid, root}, n},
		metricCheck{"routerscope_kernel_spans_abandoned_total", []string{pid, root}, 0},
		metricCheck{"routerscope_kernel_returns_unmatched_total", []string{pid, root}, 0},
		metricCheck{"routerscope_kernel_end_at_total", []string{pid, root}, n},
	)
}
