package probes

import (
	"errors"
	"fmt"
	"strings"
)

// Report is the outcome of checking a probe spec against a binary without
// attaching: for each probe, where its uprobes go, what they cost, where
// each value is read, and every problem found.
type Report struct {
	Binary  string `json:"binary"`
	BuildID string `json:"build_id"`
	Arch    string `json:"arch"`
	Spec    string `json:"spec"`
	// GoVersion is the Go version the binary was built with ("" when its
	// build information is unreadable).
	GoVersion string `json:"go_version"`
	// BuiltIn says, for each built-in part (the span capture, hand-off,
	// traceparent extraction and injection), whether it would attach to
	// this binary or is off for its Go release or layout, and why.
	BuiltIn []PartReport `json:"built_in"`
	// Offsets is the offsets file the probes were resolved with, for a
	// binary without DWARF; empty when resolved from DWARF.
	Offsets string `json:"offsets,omitempty"`
	// OK is true when no probe has a problem and the span capture itself
	// is verified for the binary.
	OK     bool          `json:"ok"`
	Probes []ProbeReport `json:"probes"`
}

// PartReport is one built-in part's check (Part.Check).
type PartReport struct {
	Part string `json:"part"`
	On   bool   `json:"on"`
	// Reason says why the part is off.
	Reason string `json:"reason,omitempty"`
}

// ProbeReport is one probe's resolution.
type ProbeReport struct {
	Symbol string `json:"symbol"`
	Span   string `json:"span"`
	// Resolved is set when the symbol was found: the offsets below are
	// meaningful.
	Resolved bool   `json:"resolved"`
	Address  uint64 `json:"address"`
	// EntryOffset is the file offset of the entry uprobe; EntryInstruction
	// the instruction under it.
	EntryOffset      uint64 `json:"entry_offset"`
	EntryInstruction string `json:"entry_instruction"`
	// EntryCost is "emulated" (the kernel emulates the probed instruction:
	// one trap) or "single-stepped" (a second trap per call).
	EntryCost     string   `json:"entry_cost"`
	ReturnOffsets []uint64 `json:"return_offsets"`
	// EndNext is set when no RET is probed (end: next or end_at): the
	// ReturnOffsets are the function's, with no uprobe on them.
	EndNext bool `json:"end_next,omitempty"`
	// EndAt is the uprobe of the probe's end_at function, nil without one.
	EndAt    *EndAtReport  `json:"end_at,omitempty"`
	Values   []ValueReport `json:"values"`
	Problems []string      `json:"problems"`
}

// EndAtReport is where the uprobe of a probe's end_at function goes.
type EndAtReport struct {
	Symbol      string `json:"symbol"`
	Offset      uint64 `json:"offset"`
	Instruction string `json:"instruction"`
	// Cost is CostEmulated or CostSingleStepped, as EntryCost.
	Cost string `json:"cost"`
}

// endAtReport reports where p's end_at uprobe goes, nil without end_at
// or when the function cannot be found (resolving reports that).
func (b *Binary) endAtReport(p Probe) *EndAtReport {
	if p.EndAt == "" {
		return nil
	}
	fn, err := b.Function(p.EndAt)
	if err != nil {
		return nil
	}
	r := &EndAtReport{Symbol: p.EndAt, Offset: fn.EntryOffset, Cost: CostSingleStepped}
	if fn.EntryEmulated {
		r.Cost = CostEmulated
	}
	code := make([]byte, 16)
	if n, _ := b.file.ReadAt(code, int64(fn.EntryOffset)); n > 0 {
		r.Instruction = b.arch.Instruction(code[:n])
	}
	return r
}

// ValueReport is where one attribute or the error rule reads its value.
type ValueReport struct {
	// Attribute is the attribute's name, or "error" for the error rule.
	Attribute string `json:"attribute"`
	From      string `json:"from"`
	// At is "entry", "return", or "end" for end: sources (read through the
	// registers saved at entry).
	At string `json:"at"`
	// GoType is the value's Go type; Type the attribute type it becomes.
	GoType string `json:"go_type"`
	Type   string `json:"type,omitempty"`
	// Location says where the kernel reads the value, e.g. "AX,BX" or
	// "*(AX+0x38)+0x10".
	Location string `json:"location"`
}

// Entry costs.
const (
	CostEmulated      = "emulated"
	CostSingleStepped = "single-stepped"
)

// Verify resolves every probe of spec against b as Attach would, without
// attaching or needing privileges, and reports per probe what Resolve and
// the kernel's limits would decide. Problems do not stop the check: every
// probe and every attribute is reported. The error is only for a spec
// that fails its static validation.
func Verify(b *Binary, spec *Spec) (*Report, error) {
	if err := ValidateSpec(spec); err != nil {
		return nil, err
	}
	rep := &Report{Binary: b.Path, BuildID: b.BuildID, Arch: b.arch.Name(), Spec: spec.Path, OK: true}
	rep.GoVersion, _ = b.GoVersion()
	for _, part := range []Part{PartCapture, PartHandOff, PartExtract, PartInject} {
		pr := PartReport{Part: part.Name, On: true}
		if err := part.Check(b); err != nil {
			pr.On, pr.Reason = false, err.Error()
			if part.Name == PartCapture.Name {
				rep.OK = false // Attach would refuse the binary
			}
		}
		rep.BuiltIn = append(rep.BuiltIn, pr)
	}
	if path := b.offsetsFileFor(spec); path != "" {
		// No DWARF, but an offsets file: report what the agent will use.
		b.verifyWithOffsets(rep, spec, path)
		return rep, nil
	}
	for _, p := range spec.Probes {
		pr := b.verifyProbe(p)
		if len(pr.Problems) > 0 {
			rep.OK = false
		}
		rep.Probes = append(rep.Probes, pr)
	}
	return rep, nil
}

// verifyProbe resolves one probe, attribute by attribute, so one bad
// attribute does not hide the locations of the others.
func (b *Binary) verifyProbe(p Probe) ProbeReport {
	pr := ProbeReport{Symbol: p.Symbol, Span: p.Span, Values: []ValueReport{}, Problems: []string{}}
	fn, err := b.Function(p.Symbol)
	if err != nil {
		pr.Problems = append(pr.Problems, "symbol: "+err.Error())
		return pr
	}
	bare := p
	bare.Attributes, bare.Error = nil, nil
	if _, errs := resolveProbe(b, bare); len(errs) > 0 {
		pr.Problems = append(pr.Problems, errorStrings(errs)...)
		return pr
	}
	pr.Resolved = true
	pr.EndNext, pr.EndAt = endsNext(p), b.endAtReport(p)
	pr.Address = fn.Address
	pr.EntryOffset = fn.EntryOffset
	pr.ReturnOffsets = fn.ReturnOffsets
	pr.EntryCost = CostSingleStepped
	if fn.EntryEmulated {
		pr.EntryCost = CostEmulated
	}
	code := make([]byte, 16)
	if n, _ := b.file.ReadAt(code, int64(fn.EntryOffset)); n > 0 {
		pr.EntryInstruction = b.arch.Instruction(code[:n])
	}
	sig, sigErr := b.signature(p.Symbol)
	for i, a := range p.Attributes {
		if a.From == "" {
			continue
		}
		// Resolve this attribute alone; the others become constants so
		// the attribute keeps its index in messages.
		one := p
		one.Error = nil
		one.Attributes = make([]Attribute, len(p.Attributes))
		for j, o := range p.Attributes {
			if j == i {
				one.Attributes[j] = o
			} else {
				one.Attributes[j] = Attribute{Name: o.Name, Value: ""}
			}
		}
		r, errs := resolveProbe(b, one)
		if len(errs) > 0 {
			pr.Problems = append(pr.Problems, errorStrings(errs)...)
			continue
		}
		for _, f := range append(r.Entry, r.Return...) {
			pr.Values = append(pr.Values, b.valueReport(a.Name, a.From, r.Spec.Attributes[i].Type, f, sig, sigErr))
		}
		if src, err := parseSource(a.From); err == nil && src.kind == srcDuration {
			pr.Values = append(pr.Values, ValueReport{Attribute: a.Name, From: a.From, At: "return", Type: r.Spec.Attributes[i].Type, Location: "computed in user space"})
		}
	}
	if p.Error != nil {
		one := p
		one.Attributes = nil
		if r, errs := resolveProbe(b, one); len(errs) > 0 {
			pr.Problems = append(pr.Problems, errorStrings(errs)...)
		} else if r.Error != nil {
			pr.Values = append(pr.Values, b.valueReport("error", p.Error.From, "", *r.Error, sig, sigErr))
		}
	}
	if len(pr.Problems) == 0 {
		r, errs := resolveProbe(b, p)
		switch {
		case len(errs) > 0:
			pr.Problems = append(pr.Problems, errorStrings(errs)...)
		default:
			if _, err := encodeDescriptor(r); err != nil {
				pr.Problems = append(pr.Problems, err.Error())
			}
		}
	}
	return pr
}

// valueReport describes one resolved value.
func (b *Binary) valueReport(name, from, typ string, f Fetch, sig *signature, sigErr error) ValueReport {
	v := ValueReport{Attribute: name, From: from, At: "entry", Type: typ, Location: b.locationString(f.Loc)}
	src, err := parseSource(from)
	if err == nil && src.atReturn() {
		v.At = "return"
		if src.end {
			v.At = "end"
		}
	}
	if err == nil && sigErr == nil {
		v.GoType = sig.goType(src)
	}
	return v
}

// goType is the Go type of the value a (resolvable) source names.
func (s *signature) goType(src source) string {
	var (
		pm   param
		slot abiSlot
	)
	switch {
	case src.kind == srcReceiver && s.receiver != nil:
		pm, slot = *s.receiver, s.recvSlot
	case src.kind == srcArg && src.index >= 0 && src.index < len(s.args):
		pm, slot = s.args[src.index], s.argSlots[src.index]
	case src.kind == srcArg && src.index < 0:
		for i, a := range s.args {
			if a.name == src.name {
				pm, slot = a, s.argSlots[i]
			}
		}
	case src.kind == srcReturn && src.index < len(s.results):
		pm, slot = s.results[src.index], s.resultSlots[src.index]
	}
	if pm.typ == nil {
		return ""
	}
	c := startCursor(slot, pm.typ)
	if err := c.selectPath(src.path); err != nil {
		return ""
	}
	return typeName(c.typ)
}

// locationString formats a Location with the architecture's register
// names: registers in order ("AX,BX" for a string's pointer and length),
// or a memory address where *(X) is a pointer loaded from X.
func (b *Binary) locationString(loc Location) string {
	if loc.InRegs {
		names := make([]string, loc.NRegs)
		for i := range names {
			names[i] = b.arch.RegName(loc.Regs[i])
		}
		return strings.Join(names, ",")
	}
	addr := b.arch.RegName(loc.Base)
	for i, off := range loc.Offsets {
		if off != 0 {
			addr = fmt.Sprintf("%s%+#x", addr, off)
		}
		if i < len(loc.Offsets)-1 {
			addr = "*(" + addr + ")"
		}
	}
	return "memory at " + addr
}

// errorStrings flattens joined errors into one message each.
func errorStrings(errs []error) []string {
	var out []string
	for _, err := range errs {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			out = append(out, errorStrings(j.Unwrap())...)
			continue
		}
		out = append(out, err.Error())
	}
	return out
}

// String prints the report for a terminal: one block per probe.
func (r *Report) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "binary %s (%s, %s, build id %s)\nprobes %s\n", r.Binary, r.Arch, r.GoVersion, r.BuildID, r.Spec)
	if r.Offsets != "" {
		fmt.Fprintf(&sb, "locations from %s (the binary has no DWARF)\n", r.Offsets)
	}
	problems := 0
	for _, p := range r.BuiltIn {
		switch {
		case p.On:
			fmt.Fprintf(&sb, "built-in %s: on\n", p.Part)
		case p.Part == PartCapture.Name:
			fmt.Fprintf(&sb, "PROBLEM built-in %s: %s\n", p.Part, p.Reason)
			problems++
		default:
			fmt.Fprintf(&sb, "built-in %s: %s\n", p.Part, p.Reason)
		}
	}
	for _, p := range r.Probes {
		fmt.Fprintf(&sb, "\n%s -> span %s\n", p.Symbol, p.Span)
		if p.Resolved {
			fmt.Fprintf(&sb, "  entry   %#x: %s (%s)\n", p.EntryOffset, p.EntryInstruction, p.EntryCost)
			rets := make([]string, len(p.ReturnOffsets))
			for i, o := range p.ReturnOffsets {
				rets[i] = fmt.Sprintf("%#x", o)
			}
			if p.EndNext {
				fmt.Fprintf(&sb, "  returns %d, not probed (end: next): %s\n", len(rets), strings.Join(rets, " "))
			} else {
				fmt.Fprintf(&sb, "  returns %d: %s\n", len(rets), strings.Join(rets, " "))
			}
			if a := p.EndAt; a != nil {
				fmt.Fprintf(&sb, "  end at  %#x: %s: %s (%s)\n", a.Offset, a.Symbol, a.Instruction, a.Cost)
			}
		}
		for _, v := range p.Values {
			typ := v.GoType
			if v.Type != "" {
				typ += " -> " + v.Type
			}
			fmt.Fprintf(&sb, "  %-7s %s = %s: %s, %s\n", v.At, v.Attribute, v.From, strings.TrimPrefix(typ, " -> "), v.Location)
		}
		for _, pr := range p.Problems {
			fmt.Fprintf(&sb, "  PROBLEM %s\n", pr)
			problems++
		}
	}
	if problems == 0 {
		fmt.Fprintf(&sb, "\nok: %d probes resolve\n", len(r.Probes))
	} else {
		fmt.Fprintf(&sb, "\n%d problems\n", problems)
	}
	return sb.String()
}

// Problems returns every problem of the report, each prefixed with its
// probe's symbol, joined as one error; nil when the report is OK.
func (r *Report) Problems() error {
	var errs []error
	for _, p := range r.BuiltIn {
		if !p.On && p.Part == PartCapture.Name {
			errs = append(errs, errors.New(p.Reason))
		}
	}
	for _, p := range r.Probes {
		for _, pr := range p.Problems {
			errs = append(errs, fmt.Errorf("%s: %s", p.Symbol, pr))
		}
	}
	return errors.Join(errs...)
}
