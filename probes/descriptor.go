package probes

import (
	"encoding/binary"
	"fmt"
)

// This file lays out the descriptors the kernel programs read: one
// struct probe_desc per probe, keyed by probe id in the descs map.

// indexProbes returns the probes indexed by ID, checking the IDs fit the
// kernel's descriptor map and do not repeat.
func indexProbes(prog *Program) ([]*Resolved, error) {
	var byID []*Resolved
	for _, p := range prog.Probes {
		if p == nil {
			continue
		}
		if p.ID < 0 || p.ID >= MaxProbes {
			return nil, fmt.Errorf("probe %s has id %d: the kernel holds ids 0 to %d: %w", p.Spec.Symbol, p.ID, MaxProbes-1, ErrKernelLimit)
		}
		for len(byID) <= p.ID {
			byID = append(byID, nil)
		}
		if byID[p.ID] != nil {
			return nil, fmt.Errorf("probes %s and %s share id %d: give each probe its index in Program.Probes: %w", byID[p.ID].Spec.Symbol, p.Spec.Symbol, p.ID, ErrInvalidOptions)
		}
		byID[p.ID] = p
	}
	return byID, nil
}

// encodeDescriptor lays out struct probe_desc for p.
func encodeDescriptor(p *Resolved) ([]byte, error) {
	if len(p.Entry) > MaxFetches || len(p.Return) > MaxFetches {
		return nil, fmt.Errorf("probe %s reads %d values at entry and %d at return: at most %d each, drop attributes: %w",
			p.Spec.Symbol, len(p.Entry), len(p.Return), MaxFetches, ErrKernelLimit)
	}
	b := make([]byte, pdLen)
	le := binary.LittleEndian
	le.PutUint32(b[pdNEntry:], uint32(len(p.Entry)))
	le.PutUint32(b[pdNReturn:], uint32(len(p.Return)))
	parent := int32(-1)
	if p.ParentID >= 0 && p.ParentID != p.ID {
		parent = int32(p.ParentID)
	}
	le.PutUint32(b[pdParentID:], uint32(parent))
	put := func(at int, f Fetch) error {
		if err := encodeFetch(b[at:at+fdLen], f); err != nil {
			return fmt.Errorf("probe %s: %w", p.Spec.Symbol, err)
		}
		return nil
	}
	for i, f := range p.Entry {
		if err := put(pdEntry+i*fdLen, f); err != nil {
			return nil, err
		}
	}
	for i, f := range p.Return {
		if err := put(pdReturn+i*fdLen, f); err != nil {
			return nil, err
		}
	}
	if p.Error != nil {
		le.PutUint32(b[pdHasError:], 1)
		if err := put(pdErr, *p.Error); err != nil {
			return nil, err
		}
	}
	var flags uint32
	if p.EndNext {
		flags |= descEndNext
	}
	if p.EndFromEntry {
		flags |= descEndFromEntry
	}
	le.PutUint32(b[pdFlags:], flags)
	return b, nil
}

// encodeFetch lays out struct fetch_desc for f into b.
func encodeFetch(b []byte, f Fetch) error {
	if f.Kind < KindInt || f.Kind > KindError {
		return fmt.Errorf("value kind %d is not one the kernel reads: %w", f.Kind, ErrKernelLimit)
	}
	loc := f.Loc
	b[fdKind] = byte(f.Kind)
	switch f.Kind {
	case KindInt, KindUint, KindBool, KindFloat:
		// Only scalars use Size; strings, slices and interfaces have their
		// fixed layouts.
		if f.Size > 8 {
			return fmt.Errorf("scalar of %d bytes: at most 8: %w", f.Size, ErrKernelLimit)
		}
		b[fdSize] = f.Size
	}
	if loc.InRegs {
		if f.Kind == KindFloat {
			return fmt.Errorf("float in a register: the kernel sees no floating-point registers: %w", ErrKernelLimit)
		}
		if loc.NRegs == 0 || loc.NRegs > 3 {
			return fmt.Errorf("value in %d registers: want 1 to 3: %w", loc.NRegs, ErrKernelLimit)
		}
		b[fdInRegs] = 1
		b[fdNRegs] = loc.NRegs
		for i := range int(loc.NRegs) {
			if loc.Regs[i] >= NumRegs {
				return fmt.Errorf("register %d is not a probes.Reg: %w", loc.Regs[i], ErrKernelLimit)
			}
			b[fdRegs+i] = byte(loc.Regs[i])
		}
		return nil
	}
	if loc.Base >= NumRegs {
		return fmt.Errorf("base register %d is not a probes.Reg: %w", loc.Base, ErrKernelLimit)
	}
	if len(loc.Offsets) > MaxOffsets {
		return fmt.Errorf("field path with %d offsets: the kernel follows at most %d: %w", len(loc.Offsets), MaxOffsets, ErrKernelLimit)
	}
	b[fdBase] = byte(loc.Base)
	b[fdNOffsets] = byte(len(loc.Offsets))
	for i, off := range loc.Offsets {
		binary.LittleEndian.PutUint64(b[fdOffsets+8*i:], uint64(off))
	}
	return nil
}
