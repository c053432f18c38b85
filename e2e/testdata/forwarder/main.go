// Command forwarder is an HTTP server that passes each request's
// traceparent and tracestate on to its upstream itself, as an application
// with its own propagation does: the traced process whose outgoing
// requests already carry trace context when the agent's injector sees them.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

var client = &http.Client{Timeout: 10 * time.Second}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	upstream := flag.String("upstream", "", "host:port of the model server")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("{\"listen\":%q}\n", ln.Addr().String())
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handle(w, r, *upstream) })
	if err := http.Serve(ln, h); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// handle is the root span: one per incoming request.
//
//go:noinline
func handle(w http.ResponseWriter, r *http.Request, upstream string) {
	io.Copy(io.Discard, r.Body)
	status := forward(upstream, r.Header.Get("x-request-id"), r.Header.Get("traceparent"), r.Header.Get("tracestate"))
	w.WriteHeader(status)
}

// forward sends the upstream request with the caller's headers copied.
//
//go:noinline
func forward(upstream, id, traceparent, tracestate string) int {
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	req, err := http.NewRequest(http.MethodPost, "http://"+upstream+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return http.StatusInternalServerError
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-request-id", id)
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	if tracestate != "" {
		req.Header.Set("tracestate", tracestate)
	}
	resp, err := client.Do(req)
	if err != nil {
		return http.StatusBadGateway
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
