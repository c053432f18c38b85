package agent

import (
	"net/http"
	"net/http/pprof"
)

// servePprof adds Go's profiling endpoints to mux, under the paths `go
// tool pprof` expects: /debug/pprof/ (index and the named profiles: heap,
// goroutine, allocs, block, mutex, threadcreate), /debug/pprof/profile (CPU,
// ?seconds=N), /debug/pprof/trace, /debug/pprof/cmdline and
// /debug/pprof/symbol. Only with routerscope.metrics.pprof (or --pprof):
// the handlers are registered on the agent's own mux, never on
// http.DefaultServeMux.
func servePprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}
