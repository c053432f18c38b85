package strictyaml

import (
	"bytes"
	"fmt"
	"regexp"

	"gopkg.in/yaml.v3"
)

// maxLineSearch bounds the documents whose syntax errors are located
// line by line (each line costs one parse of the lines before it).
const maxLineSearch = 500

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): `)

// SyntaxError rewrites yaml.v3's syntax error err, from parsing data, to
// name the line of the mistake. yaml.v3 reports the line where the
// enclosing block began, often lines before the mistake (a mis-indented
// key under exporter: was reported at tracing:). The first prefix of the
// document that does not parse ends at the line that broke it.
func SyntaxError(data []byte, err error) string {
	msg := err.Error()
	m := yamlLineRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > maxLineSearch {
		return msg
	}
	var prefix []byte
	for i, l := range lines {
		prefix = append(prefix, l...)
		var n yaml.Node
		if yaml.Unmarshal(prefix, &n) != nil {
			return fmt.Sprintf("line %d: %s", i+1, msg[len(m[0]):])
		}
	}
	return msg
}
