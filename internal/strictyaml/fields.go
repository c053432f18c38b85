package strictyaml

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Field decodes one key's value; path is the key's full dotted path.
type Field func(n *yaml.Node, path string) error

// Fields is a mapping's schema: its allowed keys and their decoders.
type Fields map[string]Field

// Mapping checks that n is a mapping (or null: nothing to decode) whose
// keys are all in fields, each given once, and decodes each in document
// order. The first mistake is returned; an unknown key's error lists the
// allowed ones.
func Mapping(n *yaml.Node, path string, fields Fields) error {
	if IsNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return TypeError(path, "a mapping", n)
	}
	for _, k := range Keys(n) {
		f, ok := fields[k.Name]
		if !ok {
			allowed := make([]string, 0, len(fields))
			for name := range fields {
				allowed = append(allowed, name)
			}
			sort.Strings(allowed)
			return errorf(path+"."+k.Name, k.Line, "unknown key, allowed keys in %s: %s", path, strings.Join(allowed, ", "))
		}
		if k.Repeated {
			return errorf(path+"."+k.Name, k.Line, "key given twice")
		}
		if err := f(k.Value, path+"."+k.Name); err != nil {
			return err
		}
	}
	return nil
}

// Nested is the field of a nested mapping with the given schema.
func Nested(fields Fields) Field {
	return func(n *yaml.Node, path string) error { return Mapping(n, path, fields) }
}

// List decodes each item of a sequence (or nothing, for null) with item;
// want names the sequence in a type error.
func List(n *yaml.Node, path, want string, item Field) error {
	if IsNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return TypeError(path, want, n)
	}
	for i, it := range n.Content {
		if err := item(it, fmt.Sprintf("%s[%d]", path, i)); err != nil {
			return err
		}
	}
	return nil
}

// Map decodes each value of a mapping of free-form names (or nothing, for
// null) with value, which is given the name; want names the mapping in a
// type error.
func Map(n *yaml.Node, path, want string, value func(name string, n *yaml.Node, path string) error) error {
	if IsNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return TypeError(path, want, n)
	}
	for _, k := range Keys(n) {
		if err := value(k.Name, k.Value, path+"."+k.Name); err != nil {
			return err
		}
	}
	return nil
}

// scalar decodes a scalar tagged with one of tags into dst; want names
// what is expected in a type error.
func scalar[T any](dst *T, want string, tags ...string) Field {
	return func(n *yaml.Node, path string) error {
		if n.Kind != yaml.ScalarNode || !slices.Contains(tags, n.ShortTag()) {
			return TypeError(path, want, n)
		}
		if err := n.Decode(dst); err != nil {
			return errorf(path, n.Line, "%v", err)
		}
		return nil
	}
}

// String decodes a string into dst; null leaves dst as it is. Numbers and
// booleans are not silently turned into strings: a quoted value is what
// the guide writes.
func String(dst *string) Field {
	return func(n *yaml.Node, path string) error {
		if IsNull(n) {
			return nil
		}
		return scalar(dst, "a string", "!!str")(n, path)
	}
}

// Bool decodes true or false into dst.
func Bool(dst *bool) Field { return scalar(dst, "a boolean (true or false)", "!!bool") }

// Int decodes an integer into dst.
func Int(dst *int) Field { return scalar(dst, "an integer", "!!int") }

// Float decodes a finite number into dst.
func Float(dst *float64) Field {
	return func(n *yaml.Node, path string) error {
		var f float64
		if err := scalar(&f, "a number", "!!float", "!!int")(n, path); err != nil {
			return err
		}
		// YAML spells NaN and infinity .nan and .inf; no setting means
		// either, and NaN would pass every range check.
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return errorf(path, n.Line, "%s is not a finite number", n.Value)
		}
		*dst = f
		return nil
	}
}

// Duration decodes a Go duration string ("10s") into dst.
func Duration(dst *time.Duration) Field {
	return func(n *yaml.Node, path string) error {
		var s string
		if err := scalar(&s, `a duration such as "10s" or "500ms"`, "!!str")(n, path); err != nil {
			return err
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return errorf(path, n.Line, "%q is not a duration, write e.g. \"10s\" or \"500ms\"", n.Value)
		}
		*dst = d
		return nil
	}
}

// StringList appends a list of strings to dst.
func StringList(dst *[]string) Field {
	return func(n *yaml.Node, path string) error {
		return List(n, path, "a list of strings", func(item *yaml.Node, path string) error {
			var s string
			if err := String(&s)(item, path); err != nil {
				return err
			}
			*dst = append(*dst, s)
			return nil
		})
	}
}

// StringMap decodes a mapping of strings into a new map at dst.
func StringMap(dst *map[string]string) Field {
	return func(n *yaml.Node, path string) error {
		if IsNull(n) {
			return nil
		}
		m := map[string]string{}
		err := Map(n, path, "a mapping of strings", func(name string, n *yaml.Node, path string) error {
			var v string
			if err := String(&v)(n, path); err != nil {
				return err
			}
			m[name] = v
			return nil
		})
		if err != nil {
			return err
		}
		*dst = m
		return nil
	}
}
