package config

import (
	"strings"
	"testing"
)

// TestYAMLSyntaxErrorLine: the error names the line of the mistake, not
// the line where its block began.
func TestYAMLSyntaxErrorLine(t *testing.T) {
	cases := map[string]string{
		"observability:\n  tracing:\n    enabled: true\n    exporter:\n      type: otlp\n     endpoint: x\n": "line 6:",
		"routerscope:\n  log_level: info\n  - bad\n":                                                         "line 3:",
		"routerscope:\n  probes: [a.yaml\n  log_level: info\n":                                               "line 2:",
		"routerscope:\n\tlog_level: info\n":                                                                  "line 2:",
	}
	for doc, want := range cases {
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), "parse YAML: "+want) {
			t.Errorf("%q: got %v, want %s", doc, err, want)
		}
	}
}
