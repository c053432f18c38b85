package probes

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/routerscope/routerscope/internal/readlimit"
	"github.com/routerscope/routerscope/internal/strictyaml"
)

// Attribute types a spec may declare.
const (
	TypeString     = "string"
	TypeInt        = "int"
	TypeFloat      = "float"
	TypeBool       = "bool"
	TypeStringList = "string_list"
)

// Span kinds a spec may declare; empty means internal.
var spanKinds = []string{"internal", "server", "client", "producer", "consumer"}

var attrTypes = []string{TypeString, TypeInt, TypeFloat, TypeBool, TypeStringList}

// Allowed keys per YAML level, checked before decoding so that a typo is
// reported with its probe and a suggestion rather than silently ignored.
var (
	specKeys  = []string{"include", "offsets", "probes"}
	probeKeys = []string{"symbol", "span", "kind", "parent", "attributes", "error", "into_parent", "end", "end_at"}
	attrKeys  = []string{"name", "from", "value", "type", "map", "omit_empty", "max_bytes"}
	errorKeys = []string{"from", "equals", "at_least", "message"}
)

// LoadSpec reads and validates a probe file and the files it includes
// (see loadSpecTree); the returned spec holds all their probes.
func LoadSpec(path string) (*Spec, error) {
	return loadSpecTree(path)
}

// MaxSpecBytes bounds one probe file's read (the router's spec is 9 KB):
// an endless file such as /dev/zero is refused, not read until the memory
// runs out.
const MaxSpecBytes = 1 << 20

// readSpecFile reads and validates one probe file, without its includes.
func readSpecFile(path string) (*Spec, error) {
	data, err := readlimit.File(path, MaxSpecBytes)
	if errors.Is(err, readlimit.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %s: more than %d bytes; is it the right file?", ErrInvalidSpec, path, MaxSpecBytes)
	}
	if err != nil {
		return nil, fmt.Errorf("load probe spec: %w", err)
	}
	return ParseSpec(data, path)
}

// ParseSpec parses and validates a probe file; path is used in error
// messages. It is strict: unknown keys, bad sources, types and span kinds,
// duplicate names and dangling parents are all reported at once (the
// returned error joins them; each wraps ErrInvalidSpec and names the file,
// the probe, the key and the fix). An empty kind is set to internal.
func ParseSpec(data []byte, path string) (*Spec, error) {
	if path == "" {
		path = "<spec>"
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidSpec, path, err)
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, fmt.Errorf("%w: %s: the file is empty; it needs a top-level `probes:` list", ErrInvalidSpec, path)
	}
	c := &specCheck{path: path}
	c.keys(root.Content[0])
	if err := c.err(); err != nil {
		return nil, err
	}
	spec := &Spec{Path: path}
	if err := root.Content[0].Decode(spec); err != nil {
		return nil, fmt.Errorf("%w: %s: %v (see the probe spec format in the probes package documentation)", ErrInvalidSpec, path, err)
	}
	for i := range spec.Probes {
		if spec.Probes[i].Kind == "" {
			spec.Probes[i].Kind = "internal"
		}
	}
	if err := ValidateSpec(spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// specCheck collects spec errors.
type specCheck struct {
	path string
	errs []error
}

func (c *specCheck) add(where, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%w: %s: %s: %s", ErrInvalidSpec, c.path, where, fmt.Sprintf(format, args...)))
}

func (c *specCheck) err() error { return joinCapped(c.errs) }

// keys walks the YAML tree and reports unknown keys with their location.
func (c *specCheck) keys(doc *yaml.Node) {
	if doc.Kind != yaml.MappingNode {
		c.add(fmt.Sprintf("line %d", doc.Line), "the top level must be a mapping with a `probes:` list")
		return
	}
	c.mapping(doc, "top level", specKeys)
	include := strictyaml.Lookup(doc, "include")
	if include != nil && (include.Kind != yaml.SequenceNode || slices.ContainsFunc(include.Content, func(n *yaml.Node) bool { return n.Kind != yaml.ScalarNode })) {
		c.add(fmt.Sprintf("include (line %d)", include.Line), "must be a list of probe file paths, e.g. include: [net-http.yaml]")
	}
	probes := strictyaml.Lookup(doc, "probes")
	if probes == nil {
		if include == nil {
			c.add("top level", "no `probes:` key; list the functions to trace under it (or include other probe files with `include:`)")
		}
		return
	}
	if probes.Kind != yaml.SequenceNode {
		c.add(fmt.Sprintf("probes (line %d)", probes.Line), "must be a list of probes (each item starting with `- symbol: ...`)")
		return
	}
	for i, p := range probes.Content {
		where := probeWhere(i, scalar(strictyaml.Lookup(p, "symbol")))
		if p.Kind != yaml.MappingNode {
			c.add(where, "line %d: each probe must be a mapping with symbol, span, kind, parent, attributes, error", p.Line)
			continue
		}
		c.mapping(p, where, probeKeys)
		if attrs := strictyaml.Lookup(p, "attributes"); attrs != nil {
			if attrs.Kind != yaml.SequenceNode {
				c.add(where+".attributes", "line %d: must be a list of {name, from|value, type} items", attrs.Line)
			} else {
				for j, a := range attrs.Content {
					aw := fmt.Sprintf("%s.attributes[%d]", where, j)
					if n := scalar(strictyaml.Lookup(a, "name")); n != "" {
						aw += " (" + n + ")"
					}
					if a.Kind != yaml.MappingNode {
						c.add(aw, "line %d: each attribute must be a mapping like {name: x, from: arg:0}", a.Line)
						continue
					}
					c.mapping(a, aw, attrKeys)
				}
			}
		}
		if e := strictyaml.Lookup(p, "error"); e != nil {
			if e.Kind != yaml.MappingNode {
				c.add(where+".error", "line %d: must be a mapping like {from: return:1}", e.Line)
			} else {
				c.mapping(e, where+".error", errorKeys)
			}
		}
	}
}

// mapping reports keys of m given twice or not in allowed, suggesting the
// closest allowed one.
func (c *specCheck) mapping(m *yaml.Node, where string, allowed []string) {
	for _, k := range strictyaml.Keys(m) {
		if k.Repeated {
			c.add(where, "line %d: key %q appears twice; keep one", k.Line, k.Name)
		}
		if slices.Contains(allowed, k.Name) {
			continue
		}
		fix := "allowed keys: " + strings.Join(allowed, ", ")
		if s := closestWord(k.Name, allowed); s != "" {
			fix = fmt.Sprintf("did you mean %q? (%s)", s, fix)
		}
		c.add(where, "line %d: unknown key %q; %s", k.Line, k.Name, fix)
	}
}

func scalar(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

// probeWhere names a probe in messages: probes[2] (main.handle).
func probeWhere(i int, symbol string) string {
	if symbol == "" {
		return fmt.Sprintf("probes[%d]", i)
	}
	return fmt.Sprintf("probes[%d] (%s)", i, symbol)
}

// closestWord returns the allowed word within edit distance 2 of w.
func closestWord(w string, allowed []string) string {
	best, bestD := "", 3
	for _, a := range allowed {
		if d := editDistance(w, a, 2); d < bestD {
			best, bestD = a, d
		}
	}
	return best
}

// ValidateSpec checks a spec's static rules (everything that does not need
// the binary): required keys, span kinds, attribute sources and types,
// constants, error rules, unique attribute names and symbols, and parents.
// ParseSpec calls it; Resolve calls it again for specs built in code.
func ValidateSpec(spec *Spec) error {
	c := &specCheck{path: spec.Path}
	if c.path == "" {
		c.path = "<spec>"
	}
	if len(spec.Probes) == 0 && len(spec.Include) == 0 {
		c.add("probes", "the list is empty; add at least one probe with a symbol and a span")
	}
	if len(spec.Probes) > MaxProbes {
		// The kernel side holds MaxProbes descriptors: more could never
		// attach, and resolving them all only costs time.
		c.add("probes", "%d probes; one attach holds at most %d: split the spec by process", len(spec.Probes), MaxProbes)
		return c.err()
	}
	spans := map[string]int{}
	symbols := map[string]int{}
	for i, p := range spec.Probes {
		where := probeWhere(i, p.Symbol)
		if p.Symbol == "" {
			c.add(where, "missing `symbol`: the Go function to trace, e.g. main.(*Server).handle (see `go tool nm BINARY`)")
		} else if j, dup := symbols[p.Symbol]; dup {
			c.add(where+".symbol", "%s is already probed by probes[%d]; merge the two probes", p.Symbol, j)
		} else {
			symbols[p.Symbol] = i
		}
		if p.Span == "" {
			c.add(where, "missing `span`: the span name the function produces, e.g. semantic_router.classification")
		} else if j, dup := spans[p.Span]; dup {
			c.add(where+".span", "span name %q is already used by probes[%d]; span names must be unique in a file so `parent` can name them", p.Span, j)
		} else {
			spans[p.Span] = i
		}
		if p.Kind != "" && !slices.Contains(spanKinds, p.Kind) {
			c.add(where+".kind", "%q is not a span kind; use one of %s", p.Kind, strings.Join(spanKinds, ", "))
		}
		names := map[string]bool{}
		for j, a := range p.Attributes {
			aw := fmt.Sprintf("%s.attributes[%d]", where, j)
			if a.Name != "" {
				aw += " (" + a.Name + ")"
			}
			if a.Name == "" {
				c.add(aw, "missing `name`: the attribute key, e.g. llm.model")
			} else if names[a.Name] {
				c.add(aw+".name", "attribute %q is declared twice in this probe; remove one", a.Name)
			}
			names[a.Name] = true
			checkAttribute(c, aw, a)
		}
		if p.Error != nil {
			checkErrorRule(c, where+".error", p.Error)
		}
		checkIntoParent(c, where, p)
		checkEnd(c, where, p)
	}
	for i, p := range spec.Probes {
		if p.Parent == "" {
			continue
		}
		where := probeWhere(i, p.Symbol) + ".parent"
		if p.Parent == p.Span {
			c.add(where, "a span cannot be its own parent; name another probe's span or remove `parent`")
		} else if _, ok := spans[p.Parent]; !ok && len(spec.Include) == 0 {
			// (Not checked with includes: the parent may be in an
			// included file, and LoadSpec checks the merged spec.)
			c.add(where, "no probe in this file has span %q; parent must name another probe's `span` (known: %s)", p.Parent, strings.Join(sortedKeys(spans), ", "))
		}
	}
	for i, p := range spec.Probes {
		if j, ok := symbols[p.EndAt]; ok && p.EndAt != "" && j != i {
			c.add(probeWhere(i, p.Symbol)+".end_at", "%s is probed by probes[%d]; two uprobes at its entry would run in no defined order, so name another function", p.EndAt, j)
		}
	}
	checkParentCycles(c, spec)
	checkIntoParentRefs(c, spec)
	return c.err()
}

// checkParentCycles reports probes whose parents lead back to them
// through other probes (a -> b -> a): such spans could never nest. A span
// that is its own parent is reported above.
func checkParentCycles(c *specCheck, spec *Spec) {
	parent := map[string]string{}
	for _, p := range spec.Probes {
		if p.Parent != "" && p.Parent != p.Span {
			parent[p.Span] = p.Parent
		}
	}
	reported := map[string]bool{}
	for i, p := range spec.Probes {
		chain := []string{p.Span}
		for s, n := parent[p.Span], 0; s != "" && n <= len(spec.Probes); s, n = parent[s], n+1 {
			chain = append(chain, s)
			if s != p.Span {
				continue
			}
			key := slices.Min(chain[:len(chain)-1])
			if !reported[key] {
				reported[key] = true
				c.add(probeWhere(i, p.Symbol)+".parent", "parents form a cycle: %s; one of these spans must have another parent, or none", strings.Join(chain, " -> "))
			}
			break
		}
	}
}

func checkAttribute(c *specCheck, where string, a Attribute) {
	if a.Type != "" && !slices.Contains(attrTypes, a.Type) {
		c.add(where+".type", "%q is not an attribute type; use one of %s, or omit it to use the Go type", a.Type, strings.Join(attrTypes, ", "))
	}
	if a.Map != nil && a.Type != "" && a.Type != TypeString {
		c.add(where+".type", "with `map` the value is the mapped string, so type must be string or omitted, not %s", a.Type)
	}
	if a.MaxBytes < 0 || a.MaxBytes > MaxStringBytes {
		c.add(where+".max_bytes", "%d is out of range; use 1 to %d (the kernel copies at most %d bytes of a string), or omit it", a.MaxBytes, MaxStringBytes, MaxStringBytes)
	}
	switch {
	case a.From == "" && a.Value == nil:
		c.add(where, "needs `from` (%s) or a constant `value`", fromSyntax)
	case a.From != "" && a.Value != nil:
		c.add(where, "has both `from` and `value`; keep `from` to read the value from the program, or `value` for a constant")
	case a.Value != nil:
		if a.Map != nil {
			c.add(where+".map", "a constant `value` needs no `map`; write the mapped value directly")
		}
		if got := constType(a.Value); got == "" {
			c.add(where+".value", "constant %v is not a string, number, bool or list of strings", a.Value)
		} else if a.Type != "" && !constFits(got, a.Type) {
			c.add(where+".value", "constant %v is a %s but type is %s; change the value or the type", a.Value, got, a.Type)
		}
	default:
		s, err := parseSource(a.From)
		if err != nil {
			c.add(where+".from", "%v", err)
			return
		}
		if s.kind == srcDuration && a.Type != "" && a.Type != TypeInt && a.Type != TypeFloat {
			c.add(where+".type", "a duration is a number; use type int or float (or omit it), not %s", a.Type)
		}
	}
}

func checkErrorRule(c *specCheck, where string, e *ErrorRule) {
	if e.From == "" {
		c.add(where+".from", "missing: name the result that signals failure, e.g. return:1 (an error) or return:0.Blocked (a bool)")
		return
	}
	s, err := parseSource(e.From)
	if err != nil {
		c.add(where+".from", "%v", err)
		return
	}
	if !s.atReturn() {
		c.add(where+".from", "%q is not a result; failure is decided when the span ends, so use return:INDEX[.Field] or end:arg:NAME.Field", e.From)
	}
	if e.Equals != nil {
		switch e.Equals.(type) {
		case bool, int, int64, uint64:
		default:
			c.add(where+".equals", "%v is not a bool or an integer", e.Equals)
		}
	}
	if e.AtLeast != nil {
		if _, isBool := e.Equals.(bool); isBool {
			c.add(where+".at_least", "at_least applies to integer results; a bool result fails when it equals `equals`")
		}
	}
	if e.Message != "" {
		m, err := parseSource(e.Message)
		switch {
		case err != nil:
			c.add(where+".message", "%v", err)
		case !m.atReturn():
			c.add(where+".message", "%q is not a result; the message is read when the span ends, so use return:INDEX[.Field] or end:arg:NAME.Field of a string", e.Message)
		}
	}
}

// constType is the attribute type of a YAML constant, "" if none fits.
func constType(v any) string {
	switch v := v.(type) {
	case string:
		return TypeString
	case int, int64, uint64:
		return TypeInt
	case float64:
		return TypeFloat
	case bool:
		return TypeBool
	case []any:
		for _, e := range v {
			if _, ok := e.(string); !ok {
				return ""
			}
		}
		return TypeStringList
	}
	return ""
}

// constFits allows an integer constant where a float is declared.
func constFits(got, want string) bool {
	return got == want || (got == TypeInt && want == TypeFloat)
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
