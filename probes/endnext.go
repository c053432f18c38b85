package probes

import "fmt"

// Values of Probe.End.
const (
	EndReturn = "return"
	EndNext   = "next"
)

// checkEnd validates a probe's `end`.
func checkEnd(c *specCheck, where string, p Probe) {
	switch p.End {
	case "", EndReturn, EndNext:
	default:
		c.add(where+".end", "%q is not an end; use return (at the function's RETs, the default) or next (where the next sibling span starts or the parent ends)", p.End)
	}
	switch {
	case p.EndAt == "":
	case p.End == EndReturn:
		c.add(where+".end_at", "end_at ends the span at another function's entry, without a RET; use end: next (or leave end out) with it, or drop end_at")
	case p.IntoParent:
		c.add(where+".end_at", "an into_parent probe makes no span of its own to end; remove end_at")
	case p.EndAt == p.Symbol:
		c.add(where+".end_at", "the function cannot end its own span at its entry; name the function its caller runs after it returns")
	}
}

// endsNext reports whether p's span ends without a RET uprobe: end: next,
// or end_at (which ends it at that function's entry as well).
func endsNext(p Probe) bool { return p.End == EndNext || p.EndAt != "" }

// resolveEndAt places the uprobe of p's end_at function, which ends r's
// span, in b.
func resolveEndAt(b *Binary, p Probe, r *Resolved) error {
	if p.EndAt == "" {
		return nil
	}
	fn, err := b.Function(p.EndAt)
	if err != nil {
		return fmt.Errorf("end_at: %w", err)
	}
	r.EndAt = fn
	return nil
}

// endSources tracks how a probe's end values (results, error rule) are
// read: at its RETs from the result registers (return:) or through the
// registers saved at entry (end:). The kernel reads all of a probe's end
// values one way.
type endSources struct {
	ret, entry bool
}

// probeEnds is how p's end values are read, from its sources.
func probeEnds(p Probe) endSources {
	var e endSources
	for _, a := range p.Attributes {
		if s, err := parseSource(a.From); err == nil {
			e.add(s)
		}
	}
	if p.Error != nil {
		for _, from := range []string{p.Error.From, p.Error.Message} {
			if s, err := parseSource(from); err == nil {
				e.add(s)
			}
		}
	}
	return e
}

func (e *endSources) add(s source) {
	switch {
	case s.end:
		e.entry = true
	case s.kind == srcReturn:
		e.ret = true
	}
}

// check reports a probe whose end values cannot all be read.
func (e endSources) check(p Probe) error {
	if e.ret && e.entry {
		return fmt.Errorf("end values: the probe reads both return: and end: sources; the kernel reads a span's end values one way, so use only one: %w", ErrInvalidSpec)
	}
	if endsNext(p) && e.ret {
		return fmt.Errorf("end: next (or end_at): the span ends without a RET, so there are no results to read; read them with end:arg:NAME.Field through a pointer the function fills: %w", ErrInvalidSpec)
	}
	return nil
}
