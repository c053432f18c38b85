package probes

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Resolve turns every probe of spec into a Resolved against binary b: the
// function's uprobe offsets and, for each attribute and the error rule,
// which registers or memory to read at entry or at return. Probe IDs are
// the spec's indices. Attributes without a declared type get the type
// derived from the Go type in the returned Resolved.Spec (the caller's
// spec is not modified). Errors of all probes are joined; each names the
// file, the probe, the key and the fix.
func Resolve(b *Binary, spec *Spec) (*Program, error) {
	if spec == nil {
		return nil, fmt.Errorf("%w: no spec", ErrInvalidSpec)
	}
	if err := ValidateSpec(spec); err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("resolve %s: no binary", spec.Path)
	}
	path := spec.Path
	if path == "" {
		path = "<spec>"
	}
	if b.elf != nil && b.elf.Section(".gopclntab") == nil && b.elf.Section(".go.buildinfo") == nil {
		// Said once, rather than "symbol not found" for every probe.
		return nil, fmt.Errorf("resolve %s against %s: it is not a Go binary (no .gopclntab, no Go build info): %w", path, b.Path, ErrNotSupported)
	}
	prog := &Program{Binary: b.Path, BuildID: b.BuildID}
	ids := map[string]int{}
	for i, p := range spec.Probes {
		ids[p.Span] = i
	}
	var errs []error
	noDWARF := 0
	for i, p := range spec.Probes {
		if len(errs) >= maxReportedErrors {
			// Enough to act on; resolving the rest (suggestions for a
			// missing symbol scan every function name) is wasted work.
			errs = append(errs, fmt.Errorf("%s: probes[%d] to probes[%d] not resolved after %d problems", path, i, len(spec.Probes)-1, len(errs)))
			break
		}
		r, perrs := resolveProbe(b, p)
		if len(perrs) > 0 {
			for _, err := range perrs {
				// A binary without DWARF fails every source the same way:
				// say it once, and count the rest (a stripped router's
				// message was repeated 36 times, 15 KB).
				if errors.Is(err, ErrNoDWARF) {
					noDWARF++
					if noDWARF > 1 {
						continue
					}
				}
				errs = append(errs, fmt.Errorf("%s: %s: %w", path, probeWhere(i, p.Symbol), err))
			}
			continue
		}
		r.ID = i
		r.ParentID = -1
		if p.Parent != "" {
			r.ParentID = ids[p.Parent]
		}
		prog.Probes = append(prog.Probes, r)
	}
	if noDWARF > 1 {
		errs = append(errs, fmt.Errorf("%s: %d more sources need DWARF for the same reason", path, noDWARF-1))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return prog, nil
}

// resolveProbe resolves one probe, or returns the errors of its symbol,
// attributes and error rule.
func resolveProbe(b *Binary, p Probe) (*Resolved, []error) {
	fn, err := b.Function(p.Symbol)
	if err != nil {
		return nil, []error{fmt.Errorf("symbol: %w", err)}
	}
	if len(fn.ReturnOffsets) == 0 {
		return nil, []error{fmt.Errorf("symbol: %s has no RET instruction (it never returns, or ends in a tail call), so its span could never end: %w", p.Symbol, ErrNotSupported)}
	}
	r := &Resolved{
		Spec:          p,
		Address:       fn.Address,
		SymbolOffset:  fn.SymbolOffset,
		EntryOffset:   fn.EntryOffset,
		ReturnOffsets: fn.ReturnOffsets,
	}
	r.Spec.Attributes = slices.Clone(p.Attributes)
	if r.Spec.Kind == "" {
		r.Spec.Kind = "internal"
	}
	var sig *signature
	var sigErr error
	needSig := func() (*signature, error) {
		if sig == nil && sigErr == nil {
			sig, sigErr = b.signature(p.Symbol)
			if errors.Is(sigErr, ErrNoDWARF) {
				sigErr = fmt.Errorf("reading arguments and results needs DWARF: %w; probes with only duration and constant attributes work without it", sigErr)
			}
		}
		return sig, sigErr
	}
	var errs []error
	var ends endSources
	for i := range r.Spec.Attributes {
		a := &r.Spec.Attributes[i]
		where := fmt.Sprintf("attributes[%d] (%s)", i, a.Name)
		if a.From == "" {
			if a.Type == "" {
				a.Type = constType(a.Value)
			}
			continue
		}
		src, err := parseSource(a.From)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.from: %w", where, err))
			continue
		}
		if src.kind == srcDuration {
			if a.Type == "" {
				a.Type = TypeInt
			}
			continue
		}
		sig, err := needSig()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.from %s: %w", where, a.From, err))
			continue
		}
		f, err := sig.fetch(src)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.from %s: %w", where, a.From, err))
			continue
		}
		if a.Type, err = attrType(f.Kind, a.Type, a.Map != nil); err != nil {
			errs = append(errs, fmt.Errorf("%s.type: %w", where, err))
			continue
		}
		f.Attr = i
		if src.atReturn() {
			ends.add(src)
			r.Return = append(r.Return, f)
		} else {
			r.Entry = append(r.Entry, f)
		}
	}
	if p.Error != nil {
		for _, from := range []string{p.Error.From, p.Error.Message} {
			if src, err := parseSource(from); err == nil {
				ends.add(src)
			}
		}
		if f, err := resolveErrorRule(p.Error, needSig); err != nil {
			errs = append(errs, fmt.Errorf("error.from %s: %w", p.Error.From, err))
		} else {
			r.Error = f
		}
		if p.Error.Message != "" {
			if f, err := resolveErrorMessage(p.Error.Message, needSig); err != nil {
				errs = append(errs, fmt.Errorf("error.message %s: %w", p.Error.Message, err))
			} else {
				r.Return = append(r.Return, f)
			}
		}
	}
	if err := ends.check(p); err != nil {
		errs = append(errs, err)
	}
	r.EndNext = endsNext(p)
	r.EndFromEntry = ends.entry
	if err := resolveEndAt(b, p, r); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return r, nil
}

// fetch locates the value a source names.
func (s *signature) fetch(src source) (Fetch, error) {
	var (
		pm   param
		slot abiSlot
	)
	switch src.kind {
	case srcReceiver:
		if s.receiver == nil {
			return Fetch{}, fmt.Errorf("the function is not a method, so it has no receiver; use arg:NAME or arg:INDEX: %w", ErrInvalidSpec)
		}
		pm, slot = *s.receiver, s.recvSlot
	case srcArg:
		i := src.index
		if i < 0 {
			i = slices.IndexFunc(s.args, func(p param) bool { return p.name == src.name })
			if i < 0 {
				return Fetch{}, fmt.Errorf("no parameter named %s; the parameters are %s: %w", src.name, s.describe(s.args), ErrInvalidSpec)
			}
		}
		if i >= len(s.args) {
			return Fetch{}, fmt.Errorf("argument index %d out of range: the function has %d arguments (%s), counted from 0 without the receiver: %w", i, len(s.args), s.describe(s.args), ErrInvalidSpec)
		}
		pm, slot = s.args[i], s.argSlots[i]
	case srcReturn:
		if src.index >= len(s.results) {
			return Fetch{}, fmt.Errorf("result index %d out of range: the function has %d results (%s), counted from 0: %w", src.index, len(s.results), s.describe(s.results), ErrInvalidSpec)
		}
		pm, slot = s.results[src.index], s.resultSlots[src.index]
	}
	c := startCursor(slot, pm.typ)
	c.result = src.atReturn()
	if err := c.selectPath(src.path); err != nil {
		return Fetch{}, err
	}
	loc, kind, size, err := c.finish(src.path)
	if err != nil {
		return Fetch{}, err
	}
	return Fetch{Kind: kind, Size: size, Loc: loc}, nil
}

// describe lists parameters as "name type" for error messages.
func (s *signature) describe(ps []param) string {
	if len(ps) == 0 {
		return "none"
	}
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = fmt.Sprintf("%d: %s %s", i, p.name, typeName(p.typ))
	}
	return strings.Join(parts, ", ")
}

// allowedTypes are the attribute types a value kind can be declared as.
var allowedTypes = map[ValueKind][]string{
	KindInt:         {TypeInt},
	KindUint:        {TypeInt},
	KindBool:        {TypeBool},
	KindFloat:       {TypeFloat},
	KindString:      {TypeString},
	KindStringSlice: {TypeStringList},
}

// attrType checks a declared type against the value's kind and derives it
// when empty. With a map the value is rewritten to a string.
func attrType(k ValueKind, declared string, mapped bool) (string, error) {
	if k == KindError {
		// The kernel reads an interface only for the error rule, whose
		// outcome (failed, type, message) the span already carries.
		return "", fmt.Errorf("the value is an interface (error); report errors with the probe's `error: {from: ...}` rule, which marks the span failed with the error's type and message: %w", ErrInvalidSpec)
	}
	if mapped {
		return TypeString, nil
	}
	allowed := allowedTypes[k]
	if declared == "" {
		return allowed[0], nil
	}
	if !slices.Contains(allowed, declared) {
		return "", fmt.Errorf("the value is a Go %s, which cannot be type %s; use type %s (or omit type): %w", kindName(k), declared, strings.Join(allowed, " or "), ErrInvalidSpec)
	}
	return declared, nil
}

func kindName(k ValueKind) string {
	switch k {
	case KindInt:
		return "signed integer"
	case KindUint:
		return "unsigned integer"
	case KindBool:
		return "bool"
	case KindFloat:
		return "float"
	case KindString:
		return "string"
	case KindStringSlice:
		return "[]string"
	case KindError:
		return "interface (error)"
	}
	return fmt.Sprintf("kind %d", k)
}

// resolveErrorRule locates the error rule's value and checks the rule
// fits its kind.
// Fetch.Attr values that are not attribute indexes.
const (
	// AttrErrorRule marks the error rule's value (Resolved.Error).
	AttrErrorRule = -1
	// AttrErrorMessage marks the error rule's message, read with the
	// return values (Resolved.Return).
	AttrErrorMessage = -2
)

// resolveErrorMessage resolves the error rule's message source: a string
// result or field.
func resolveErrorMessage(from string, needSig func() (*signature, error)) (Fetch, error) {
	src, err := parseSource(from)
	if err != nil {
		return Fetch{}, err
	}
	if !src.atReturn() {
		return Fetch{}, fmt.Errorf("the message is read when the span ends; use return:INDEX[.Field] or end:arg:NAME.Field: %w", ErrInvalidSpec)
	}
	sig, err := needSig()
	if err != nil {
		return Fetch{}, err
	}
	f, err := sig.fetch(src)
	if err != nil {
		return Fetch{}, err
	}
	if f.Kind != KindString {
		return Fetch{}, fmt.Errorf("the value is a Go %s; the message must be a string: %w", kindName(f.Kind), ErrInvalidSpec)
	}
	f.Attr = AttrErrorMessage
	return f, nil
}

func resolveErrorRule(e *ErrorRule, needSig func() (*signature, error)) (*Fetch, error) {
	src, err := parseSource(e.From)
	if err != nil {
		return nil, err
	}
	if !src.atReturn() {
		return nil, fmt.Errorf("failure is decided when the span ends; use return:INDEX[.Field] or end:arg:NAME.Field: %w", ErrInvalidSpec)
	}
	sig, err := needSig()
	if err != nil {
		return nil, err
	}
	f, err := sig.fetch(src)
	if err != nil {
		return nil, err
	}
	f.Attr = AttrErrorRule
	switch f.Kind {
	case KindError:
		if e.Equals != nil || e.AtLeast != nil {
			return nil, fmt.Errorf("an error result fails when non-nil; remove equals/at_least: %w", ErrInvalidSpec)
		}
	case KindBool:
		if e.Equals != nil {
			if _, ok := e.Equals.(bool); !ok {
				return nil, fmt.Errorf("the value is a bool; equals must be true or false, not %v: %w", e.Equals, ErrInvalidSpec)
			}
		}
		if e.AtLeast != nil {
			return nil, fmt.Errorf("the value is a bool; use equals, not at_least: %w", ErrInvalidSpec)
		}
	case KindInt, KindUint:
		if e.Equals == nil && e.AtLeast == nil {
			return nil, fmt.Errorf("the value is an integer; set equals (failing value) or at_least (failing threshold): %w", ErrInvalidSpec)
		}
		if _, isBool := e.Equals.(bool); isBool {
			return nil, fmt.Errorf("the value is an integer; equals must be an integer, not %v: %w", e.Equals, ErrInvalidSpec)
		}
	default:
		return nil, fmt.Errorf("the value is a Go %s; an error rule needs an error, a bool or an integer: %w", kindName(f.Kind), ErrInvalidSpec)
	}
	return &f, nil
}
