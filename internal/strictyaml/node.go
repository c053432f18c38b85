package strictyaml

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// Error is a value that does not fit where it stands: Path is the key's
// full dotted path (tracing.exporter.timeout, targets[0].pid), Line its
// line in the document.
type Error struct {
	Path string
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s (line %d): %s", e.Path, e.Line, e.Msg) }

func errorf(path string, line int, format string, args ...any) error {
	return &Error{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// TypeError reports that n, at path, is not what the schema wants there.
func TypeError(path, want string, n *yaml.Node) error {
	got := KindName(n)
	if n.Kind == yaml.ScalarNode {
		got = fmt.Sprintf("%s %q", got, n.Value)
	}
	return errorf(path, n.Line, "want %s, got %s", want, got)
}

// Key is one key of a mapping, in document order.
type Key struct {
	Name  string
	Line  int
	Value *yaml.Node
	// Repeated says an earlier key of the same mapping has this name.
	Repeated bool
}

// Keys lists the keys of mapping m in document order; nil when m is not a
// mapping.
func Keys(m *yaml.Node) []Key {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	keys := make([]Key, 0, len(m.Content)/2)
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		name := m.Content[i].Value
		keys = append(keys, Key{Name: name, Line: m.Content[i].Line, Value: m.Content[i+1], Repeated: seen[name]})
		seen[name] = true
	}
	return keys
}

// Lookup returns the value of key in mapping m, or nil when m is not a
// mapping or has no such key.
func Lookup(m *yaml.Node, key string) *yaml.Node {
	for _, k := range Keys(m) {
		if k.Name == key {
			return k.Value
		}
	}
	return nil
}

// IsNull says n is an empty or null scalar (key: with nothing after it).
func IsNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// KindName names what n is, for messages: a mapping, a list, string...
func KindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.ShortTag() {
	case "!!str":
		return "string"
	case "!!int":
		return "integer"
	case "!!float":
		return "number"
	case "!!bool":
		return "boolean"
	case "!!null":
		return "null"
	}
	return n.ShortTag()
}
