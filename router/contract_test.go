package router

import (
	"context"
	"debug/elf"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/routerscope/routerscope/router/fakellm"
)

// probedSymbols are the functions the tracing agent attaches to (doc.go,
// "the probe contract"). Renaming or inlining one breaks tracing silently,
// so this list is checked against a real build of cmd/router.
var probedSymbols = []string{
	"serveChat", "classify", "detectPII", "detectJailbreak", "lookupCache",
	"decideRoute", "selectBackend", "injectSystemPrompt", "forwardUpstream",
}

func TestProbedFunctionsSurviveInlining(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/router; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "router")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/router")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/router: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatalf("read symbol table of %s: %v", bin, err)
	}
	funcs := map[string]uint64{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC {
			funcs[s.Name] = s.Size
		}
	}
	for _, name := range probedSymbols {
		sym := routerPkg + ".(*Router)." + name
		if size, ok := funcs[sym]; !ok || size == 0 {
			t.Errorf("symbol %s missing from the router binary (inlined or renamed?)", sym)
		}
	}
	// A method's symbol survives even when every call site inlined it, and
	// then a uprobe on it never fires: check the callers really CALL it.
	calls := func(caller string) string {
		out, err := exec.Command("go", "tool", "objdump", "-s", regexp.QuoteMeta(routerPkg+".(*Router)."+caller)+"$", bin).CombinedOutput()
		if err != nil {
			t.Fatalf("go tool objdump %s: %v\n%s", caller, err, out)
		}
		return string(out)
	}
	if !strings.Contains(calls("ServeHTTP"), "CALL "+routerPkg+".(*Router).serveChat(SB)") {
		t.Errorf("ServeHTTP does not call serveChat: it was inlined")
	}
	// The root span ends after serveChat returned and reads the Outcome
	// then: it must be on the heap, which a non-inlined allocator ensures.
	if !strings.Contains(calls("ServeHTTP"), "CALL "+routerPkg+".newOutcome(SB)") {
		t.Errorf("ServeHTTP does not call newOutcome: it was inlined, and the Outcome may live on ServeHTTP's stack (keep //go:noinline)")
	}
	serveChat := calls("serveChat")
	// The last stage's span ends with the root, after serveChat returned,
	// and reads its results through the RequestState then: it must be on
	// the heap too, not in serveChat's dead frame.
	if !strings.Contains(serveChat, "CALL "+routerPkg+".newRequestState(SB)") {
		t.Errorf("serveChat does not call newRequestState: the RequestState may live on serveChat's stack (keep //go:noinline)")
	}
	for _, name := range probedSymbols[1:] {
		if !strings.Contains(serveChat, "CALL "+routerPkg+".(*Router)."+name+"(SB)") {
			t.Errorf("serveChat does not call %s: it was inlined (keep //go:noinline)", name)
		}
	}
}

const routerPkg = "github.com/routerscope/routerscope/router"

// TestOutcomeFilledOnEveryPath checks what the root span reads: serveChat's
// result, on success, block, cache hit, failure and rejection.
func TestOutcomeFilledOnEveryPath(t *testing.T) {
	h := newHarness(t, fakellm.Options{}, nil)
	call := func(method, body string, hdr map[string]string) *Outcome {
		r := httptest.NewRequest(method, ChatCompletionsPath, strings.NewReader(body))
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		return h.rt.serveChat(httptest.NewRecorder(), r, newOutcome())
	}
	ids := map[string]string{"x-request-id": "req-1", "x-user-id": "alice", "x-session-id": "s-9"}
	o := call(http.MethodPost, chatBody("auto", mathPrompt, false), ids)
	want := Outcome{RequestID: "req-1", UserID: "alice", SessionID: "s-9", Method: "POST", Path: ChatCompletionsPath,
		OriginalModel: "auto", SelectedModel: "gpt-oss-20b", Category: "math", Status: 200}
	if *o != want {
		t.Errorf("routed:\n got %+v\nwant %+v", *o, want)
	}
	o = call(http.MethodPost, chatBody("auto", mathPrompt, false), nil)
	if !o.CacheHit || o.Status != 200 || o.SelectedModel != "gpt-oss-20b" || !strings.HasPrefix(o.RequestID, "req-") {
		t.Errorf("cache hit: %+v", *o)
	}
	o = call(http.MethodPost, chatBody("gpt-oss-20b", "my mail is a@b.io", false), nil)
	if !o.Blocked || o.Status != 200 || o.SelectedModel != "" || o.Failed {
		t.Errorf("PII block: %+v", *o)
	}
	o = call(http.MethodPost, `{"model":"auto","user":"bob","messages":[{"role":"user","content":"FAKELLM_FAIL"}]}`, nil)
	if !o.Failed || o.Status != 502 || o.Error == "" || o.UserID != "bob" {
		t.Errorf("upstream failure: %+v", *o)
	}
	o = call(http.MethodPut, "", nil)
	if o.Status != 405 || o.Method != "PUT" || o.Error == "" || o.Failed {
		t.Errorf("wrong method: %+v", *o)
	}
}

// TestGracefulShutdown cancels Serve while a request is in flight: the
// request must complete and Serve must return nil.
func TestGracefulShutdown(t *testing.T) {
	fake := fakellm.New(fakellm.Options{Latency: 300 * time.Millisecond})
	fsrv := httptest.NewServer(fake)
	defer fsrv.Close()
	cfg, err := LoadConfig(shippedConfig)
	if err != nil {
		t.Fatal(err)
	}
	_ = cfg.OverrideBackends(fsrv.Listener.Addr().String())
	rt, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- rt.Serve(ctx, ln) }()

	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Post("http://"+ln.Addr().String()+ChatCompletionsPath, "application/json", strings.NewReader(chatBody("auto", mathPrompt, false)))
		if err != nil {
			done <- result{err: err}
			return
		}
		resp.Body.Close()
		done <- result{status: resp.StatusCode}
	}()
	// Wait until the request is inside the router (the backend has it).
	for len(fake.Requests()) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if r := <-done; r.err != nil || r.status != http.StatusOK {
		t.Fatalf("in-flight request during shutdown: %+v", r)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/healthz"); err == nil {
		t.Fatal("server still accepting after shutdown")
	}
}
