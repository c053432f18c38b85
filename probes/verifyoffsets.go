package probes

import "os"

// offsetsFileFor returns the offsets file ResolveAny would use for spec on
// b: only when b has no DWARF and the file exists (or the spec names it).
func (b *Binary) offsetsFileFor(spec *Spec) string {
	if b.HasDWARF() {
		return ""
	}
	if spec.Offsets != "" {
		return spec.Offsets
	}
	if spec.Path == "" {
		return ""
	}
	path := OffsetsPath(spec.Path)
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	return path
}

// verifyWithOffsets fills rep from the offsets file at path, as the agent
// would resolve the spec for b: offsets and instructions from b itself,
// value locations from the file (their Go types are not in it). A file
// that does not apply is a problem of every probe.
func (b *Binary) verifyWithOffsets(rep *Report, spec *Spec, path string) {
	rep.Offsets = path
	prog, err := ResolveWithOffsets(b, spec, path)
	if err != nil {
		rep.OK = false
		for _, p := range spec.Probes {
			rep.Probes = append(rep.Probes, ProbeReport{Symbol: p.Symbol, Span: p.Span, Values: []ValueReport{}, Problems: []string{err.Error()}})
		}
		return
	}
	for _, r := range prog.Probes {
		pr := ProbeReport{Symbol: r.Spec.Symbol, Span: r.Spec.Span, Resolved: true, Address: r.Address,
			EntryOffset: r.EntryOffset, ReturnOffsets: r.ReturnOffsets, EntryCost: CostSingleStepped,
			EndNext: r.EndNext, EndAt: b.endAtReport(r.Spec), Values: []ValueReport{}, Problems: []string{}}
		if fn, err := b.Function(r.Spec.Symbol); err == nil && fn.EntryEmulated {
			pr.EntryCost = CostEmulated
		}
		code := make([]byte, 16)
		if n, _ := b.file.ReadAt(code, int64(r.EntryOffset)); n > 0 {
			pr.EntryInstruction = b.arch.Instruction(code[:n])
		}
		for _, f := range append(append([]Fetch(nil), r.Entry...), r.Return...) {
			if f.Attr < 0 || f.Attr >= len(r.Spec.Attributes) {
				continue
			}
			a := r.Spec.Attributes[f.Attr]
			pr.Values = append(pr.Values, b.valueReport(a.Name, a.From, a.Type, f, nil, ErrNoDWARF))
		}
		if r.Error != nil && r.Spec.Error != nil {
			pr.Values = append(pr.Values, b.valueReport("error", r.Spec.Error.From, "", *r.Error, nil, ErrNoDWARF))
		}
		rep.Probes = append(rep.Probes, pr)
	}
}
