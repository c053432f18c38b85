package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/routerscope/routerscope/internal/testenv"
)

// TestInvalidUTF8Request: requests whose headers become attributes with
// invalid UTF-8 (a bad byte, or a multibyte character cut by the kernel's
// 128-byte copy) go through the real router, agent and collector among
// good ones, and every span of every request arrives, repaired.
func TestInvalidUTF8Request(t *testing.T) {
	testenv.RequireBPF(t, "the end-to-end eBPF test")
	recv, collector := pipeline(t)
	s := startBackends(t)
	s.attachAgent(t, agentConfig(t, collector))

	const n = 30
	cut := strings.Repeat("u", 127) + "€" // the copy ends inside "€"
	var reqs []chatReq
	for i := range n {
		r := chatReq{Model: "auto", Prompt: fmt.Sprintf("%s (utf8 %d)", codePrompt, i), ID: fmt.Sprintf("utf8-%02d", i)}
		switch i % 10 {
		case 1:
			r.User = "evil-\xff"
		case 4:
			r.Session = "sess-\xc3"
			r.ID += "-\xfe"
		case 7:
			r.User = cut
		}
		reqs = append(reqs, r)
	}
	for _, r := range reqs {
		if resp := s.send(t, r); resp.Status != 200 {
			t.Fatalf("%s: status %d: %s", r.ID, resp.Status, resp.Body)
		}
	}
	// Semantic cache hits have fewer spans than full requests: wait for
	// every root, then check every tree is complete.
	deadline := time.Now().Add(60 * time.Second)
	for len(buildTreesQuiet(recv.Spans())) < n && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	// The roots end last: once they are here, the rest of each tree was
	// exported with or before them.
	waitDelivered(t, recv, s.metricsAddr)
	spans := recv.Spans()
	trees := buildTrees(t, spans)
	if len(trees) != n {
		t.Fatalf("%d traces for %d requests (%d spans); agent log:\n%s", len(trees), n, len(spans), tail(s.agent.Output(), 20))
	}
	for _, tr := range trees {
		if v, ok := tr.root.Attr("cache.hit"); ok && v.GetBoolValue() {
			tr.checkStages(t, stagesCacheHit)
		} else {
			tr.checkStages(t, stagesFull)
		}
	}
	repaired := 0
	for _, sp := range spans {
		for _, kv := range sp.Attributes {
			v := kv.GetValue().GetStringValue()
			if !utf8.ValidString(v) {
				t.Errorf("%s: %s = %q arrived invalid", sp.Name, kv.GetKey(), v)
			}
			if strings.ContainsRune(v, utf8.RuneError) {
				repaired++
			}
		}
	}
	if repaired == 0 {
		t.Error("no attribute carries the replacement character: were the bad headers traced at all?")
	}
	t.Logf("%d requests (9 with invalid UTF-8): %d spans arrived, %d attributes repaired", n, len(spans), repaired)
}
