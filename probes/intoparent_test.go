package probes

import (
	"strings"
	"testing"
)

func TestIntoParentSpec(t *testing.T) {
	ok := `probes:
  - {symbol: net/http.serverHandler.ServeHTTP, span: http.server.request, kind: server}
  - symbol: net/http.(*response).WriteHeader
    span: http.server.status
    parent: http.server.request
    into_parent: true
    attributes: [{name: http.response.status_code, from: arg:code}]
`
	spec, err := ParseSpec([]byte(ok), "ok.yaml")
	if err != nil || !spec.Probes[1].IntoParent {
		t.Fatalf("valid into_parent probe: %v", err)
	}
	bad := `probes:
  - {symbol: a.f, span: s}
  - {symbol: a.g, span: t, into_parent: true, kind: server, error: {from: return:0}}
  - {symbol: a.h, span: u, parent: t}
`
	_, err = ParseSpec([]byte(bad), "bad.yaml")
	for _, want := range []string{"probes[1] (a.g).error: a probe with into_parent makes no span", "probes[1] (a.g).kind", "probes[1] (a.g).attributes", `probes[2] (a.h).parent: span "t" belongs to a probe with into_parent`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in: %v", want, err)
		}
	}
}
