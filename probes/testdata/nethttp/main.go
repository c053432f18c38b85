// Command nethttp serves HTTP and makes one client request to itself: a
// binary with net/http's server and client, whose runtime and net/http
// internals the built-in probes' Go release checks read from DWARF.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	go func() {}() // a go statement: runtime.newproc1
	resp, err := http.Get("http://" + ln.Addr().String())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	resp.Body.Close()
}
