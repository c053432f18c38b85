package probes

import (
	"fmt"
	"strconv"
	"strings"
)

// sourceKind is what an attribute's `from` reads.
type sourceKind int

const (
	srcArg sourceKind = iota + 1
	srcReceiver
	srcReturn
	srcDuration
)

// source is a parsed `from` expression.
type source struct {
	kind sourceKind
	// name is the argument name for arg:NAME, or the duration unit
	// (ms, us, ns) for duration sources.
	name string
	// index is the argument or result index, -1 for arg:NAME.
	index int
	// path is the field selectors after the value, e.g. [Meta User].
	path []string
	// end is set for end:arg:... and end:receiver...: the value is read
	// when the span ends, through the registers as they were at entry (a
	// pointer to a result struct or request state the function fills).
	end bool
}

// atReturn reports whether the value is read when the span ends: results
// at the function's return, end: sources through the entry registers.
// Arguments and the receiver are otherwise read at entry, because their
// registers are reused by the body.
func (s source) atReturn() bool { return s.kind == srcReturn || s.end }

// needsDWARF reports whether resolving the source needs parameter types.
func (s source) needsDWARF() bool { return s.kind != srcDuration }

// fromSyntax is the grammar of `from`, quoted in error messages.
const fromSyntax = "arg:NAME, arg:INDEX, receiver or return:INDEX, optionally followed by .Field.Field, end: before an argument or receiver path, or duration_ms|duration_us|duration_ns"

// parseSource parses a `from` expression.
func parseSource(from string) (source, error) {
	switch from {
	case "duration_ms", "duration_us", "duration_ns":
		return source{kind: srcDuration, name: strings.TrimPrefix(from, "duration_"), index: -1}, nil
	case "":
		return source{}, fmt.Errorf("empty source; use %s", fromSyntax)
	}
	if rest, ok := strings.CutPrefix(from, "end:"); ok {
		s, err := parseSource(rest)
		if err != nil {
			return source{}, err
		}
		if s.end || (s.kind != srcArg && s.kind != srcReceiver) || len(s.path) == 0 {
			return source{}, fmt.Errorf("%q: end: reads a field through an argument or the receiver when the span ends, e.g. end:arg:state.Result.Category", from)
		}
		s.end = true
		return s, nil
	}
	head, rest, _ := strings.Cut(from, ".")
	var path []string
	if rest != "" || strings.HasSuffix(from, ".") {
		path = strings.Split(rest, ".")
		for _, f := range path {
			if !isIdent(f) {
				return source{}, fmt.Errorf("field %q in %q is not a Go field name; write the path like arg:req.Meta.User", f, from)
			}
		}
	}
	s := source{index: -1, path: path}
	switch {
	case head == "receiver":
		s.kind = srcReceiver
	case strings.HasPrefix(head, "arg:"):
		s.kind = srcArg
		v := strings.TrimPrefix(head, "arg:")
		if n, err := strconv.Atoi(v); err == nil {
			if n < 0 {
				return source{}, fmt.Errorf("argument index %d in %q is negative; arguments count from 0, not counting the receiver", n, from)
			}
			s.index = n
		} else if isIdent(v) {
			s.name = v
		} else {
			return source{}, fmt.Errorf("%q after arg: is neither a parameter name nor an index", v)
		}
	case strings.HasPrefix(head, "return:"):
		s.kind = srcReturn
		n, err := strconv.Atoi(strings.TrimPrefix(head, "return:"))
		if err != nil || n < 0 {
			return source{}, fmt.Errorf("%q: results are selected by index from 0, e.g. return:0", head)
		}
		s.index = n
	default:
		return source{}, fmt.Errorf("unknown source %q; use %s", from, fromSyntax)
	}
	return s, nil
}

// isIdent reports whether s is a Go identifier (ASCII letters, digits,
// underscore, not starting with a digit).
func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		letter := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c > 0x7f
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// String formats the source back to its `from` syntax.
func (s source) String() string {
	var head string
	switch s.kind {
	case srcDuration:
		return "duration_" + s.name
	case srcReceiver:
		head = "receiver"
	case srcArg:
		head = "arg:" + s.name
		if s.index >= 0 {
			head = "arg:" + strconv.Itoa(s.index)
		}
	case srcReturn:
		head = "return:" + strconv.Itoa(s.index)
	}
	if len(s.path) > 0 {
		head += "." + strings.Join(s.path, ".")
	}
	if s.end {
		head = "end:" + head
	}
	return head
}
