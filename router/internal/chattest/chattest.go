// Package chattest sends the chat requests the router's and the fake
// model server's tests make. It is for those tests only, and like the
// router it imports no tracing code.
package chattest

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Do sends body to url with method and the headers hdr, and returns the
// response (its body already read and closed) and the body read.
func Do(t testing.TB, method, url, body string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}
