package probes

// checkIntoParent checks a probe that adds its attributes to its parent
// span: it has no span of its own to fail, kind or children.
func checkIntoParent(c *specCheck, where string, p Probe) {
	if !p.IntoParent {
		return
	}
	if p.Error != nil {
		c.add(where+".error", "a probe with into_parent makes no span, so nothing can fail; remove `error` or `into_parent`")
	}
	if p.Kind != "" && p.Kind != "internal" {
		c.add(where+".kind", "a probe with into_parent makes no span, so it has no kind; remove `kind`")
	}
	if len(p.Attributes) == 0 {
		c.add(where+".attributes", "a probe with into_parent only adds attributes to its parent; list at least one")
	}
}

// checkIntoParentRefs rejects a parent that names a probe with
// into_parent: that probe's span is never exported, so its children
// would point at a span nobody sees.
func checkIntoParentRefs(c *specCheck, spec *Spec) {
	into := map[string]bool{}
	for _, p := range spec.Probes {
		if p.IntoParent {
			into[p.Span] = true
		}
	}
	for i, p := range spec.Probes {
		if p.Parent != "" && into[p.Parent] {
			c.add(probeWhere(i, p.Symbol)+".parent", "span %q belongs to a probe with into_parent, which makes no span; name the span it adds its attributes to", p.Parent)
		}
	}
}
