package fakellm

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/routerscope/routerscope/router/internal/chattest"
)

func post(t *testing.T, url, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	resp, b := chattest.Do(t, http.MethodPost, url+"/v1/chat/completions", body, hdr)
	return resp, string(b)
}

func TestDeterministicAnswerAndRecording(t *testing.T) {
	s := New(Options{RecordLimit: 2})
	srv := httptest.NewServer(s)
	defer srv.Close()
	body := `{"model":"m1","messages":[{"role":"user","content":"hello there"}]}`
	for i := range 3 {
		resp, out := post(t, srv.URL, body, map[string]string{"traceparent": "00-aa-bb-01", "x-n": string(rune('0' + i))})
		var c struct {
			Model   string
			Choices []struct{ Message struct{ Content string } }
		}
		if err := json.Unmarshal([]byte(out), &c); err != nil || resp.StatusCode != 200 || c.Choices[0].Message.Content != Answer("m1", "hello there") || c.Model != "m1" {
			t.Fatalf("answer %d: %d %s", i, resp.StatusCode, out)
		}
	}
	if Answer("m1", "a") == Answer("m2", "a") || Answer("m1", "a") != Answer("m1", "a") {
		t.Fatal("Answer must depend on model and prompt only")
	}
	recs := s.Requests()
	if len(recs) != 2 || recs[0].Headers["x-n"][0] != "1" || recs[1].Headers["traceparent"][0] != "00-aa-bb-01" || string(recs[1].Body) != body {
		t.Fatalf("records: %+v", recs)
	}
	resp, err := http.Get(srv.URL + "/debug/requests")
	if err != nil {
		t.Fatal(err)
	}
	var got []Recorded
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || len(got) != 2 {
		t.Fatalf("/debug/requests: %v %+v", err, got)
	}
	resp.Body.Close()
}

func TestStreamAndFailures(t *testing.T) {
	srv := httptest.NewServer(New(Options{}))
	defer srv.Close()
	resp, out := post(t, srv.URL, `{"model":"m","stream":true,"messages":[{"role":"user","content":"one two three"}]}`, nil)
	if resp.Header.Get("Content-Type") != "text/event-stream" || !strings.HasSuffix(out, "data: [DONE]\n\n") || strings.Count(out, "data: ") < 5 {
		t.Fatalf("stream: %q", out)
	}
	_, out = post(t, srv.URL, `{"model":"m","stream":true,"messages":[{"role":"user","content":"one two three FAKELLM_DROP"}]}`, nil)
	if strings.Contains(out, "[DONE]") {
		t.Fatalf("dropped stream finished: %q", out)
	}
	if resp, _ := post(t, srv.URL, `{"model":"m","messages":[{"role":"user","content":"FAKELLM_FAIL"}]}`, nil); resp.StatusCode != 500 {
		t.Fatalf("fail marker: %d", resp.StatusCode)
	}
	if resp, _ := post(t, srv.URL, `{not json`, nil); resp.StatusCode != 400 {
		t.Fatalf("bad json: %d", resp.StatusCode)
	}
	always := httptest.NewServer(New(Options{FailRate: 1}))
	defer always.Close()
	if resp, _ := post(t, always.URL, `{"model":"m","messages":[{"role":"user","content":"x"}]}`, nil); resp.StatusCode != 500 {
		t.Fatalf("fail rate 1: %d", resp.StatusCode)
	}
}

func TestLatencyHeaderHonoursClientCancel(t *testing.T) {
	srv := httptest.NewServer(New(Options{}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"x"}]}`))
	req.Header.Set(HeaderLatency, "1h")
	client := &http.Client{Timeout: 50 * time.Millisecond} // the server must not hold the test for an hour
	if _, err := client.Do(req); err == nil {
		t.Fatal("a 1h latency answered at once: header ignored")
	}
}

func TestModelsAndHealth(t *testing.T) {
	srv := httptest.NewServer(New(Options{Models: []string{"a", "b"}}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Data []struct{ ID string } }
	_ = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Data) != 2 || list.Data[1].ID != "b" {
		t.Fatalf("models: %+v", list)
	}
	if resp, err := http.Get(srv.URL + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v", err)
	}
}
