package probes

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/routerscope/routerscope/internal/strictyaml"
)

// An offsets file carries what resolving a probe spec needs from DWARF
// (where each value is, its type) for binaries that have none: it is
// extracted from an unstripped build and used for the stripped build of the
// same code. Function offsets are found again in the stripped binary's own
// pclntab, which stripping keeps, and checked against the file.

// Bounds on an offsets file, which is read as hostile input.
const (
	offsetsVersion  = 1
	maxOffsetsBytes = 16 << 20
	maxOffsetBuilds = 256
)

// ErrOffsets: an offsets file does not apply to the binary or the spec
// (another build, a changed probe file), or is malformed.
var ErrOffsets = errors.New("offsets file does not apply")

// Offsets is an offsets file: resolutions of one probe spec, one per build.
type Offsets struct {
	Version int            `yaml:"version"`
	Builds  []OffsetsBuild `yaml:"builds"`
}

// OffsetsBuild is a probe spec resolved for one build of a binary.
type OffsetsBuild struct {
	// BuildID is the build the resolution is for (Binary.BuildID).
	BuildID string `yaml:"build_id"`
	Arch    string `yaml:"arch"`
	// ExtractedFrom is the unstripped binary it was read from, for people.
	ExtractedFrom string `yaml:"extracted_from"`
	// Pclntab is the SHA-256 of the build's .gopclntab: the same table
	// means the same functions compiled from the same source at the same
	// offsets, whatever else the linker stripped.
	Pclntab string `yaml:"pclntab_sha256"`
	// Spec is the SHA-256 of the probes the resolution is of; a changed
	// probe file needs a new extraction.
	Spec   string         `yaml:"spec_sha256"`
	Probes []OffsetsProbe `yaml:"probes"`
}

// OffsetsProbe is one probe's resolution.
type OffsetsProbe struct {
	Symbol        string   `yaml:"symbol"`
	EntryOffset   uint64   `yaml:"entry_offset"`
	ReturnOffsets []uint64 `yaml:"return_offsets"`
	// Types are the attribute types, parallel to the probe's attributes
	// (derived from the Go types where the spec leaves them out).
	Types  []string `yaml:"types"`
	Entry  []Fetch  `yaml:"entry"`
	Return []Fetch  `yaml:"return"`
	Error  *Fetch   `yaml:"error,omitempty"`
}

// ExtractOffsets resolves spec against b, which must have DWARF, and
// returns the resolution for b's build.
func ExtractOffsets(b *Binary, spec *Spec) (*OffsetsBuild, error) {
	prog, err := Resolve(b, spec)
	if err != nil {
		return nil, err
	}
	pcln, err := b.pclntabDigest()
	if err != nil {
		return nil, err
	}
	ob := &OffsetsBuild{BuildID: b.BuildID, Arch: b.arch.Name(), ExtractedFrom: b.Path, Pclntab: pcln, Spec: specDigest(spec)}
	for _, r := range prog.Probes {
		op := OffsetsProbe{Symbol: r.Spec.Symbol, EntryOffset: r.EntryOffset, ReturnOffsets: r.ReturnOffsets,
			Entry: r.Entry, Return: r.Return, Error: r.Error}
		for _, a := range r.Spec.Attributes {
			op.Types = append(op.Types, a.Type)
		}
		ob.Probes = append(ob.Probes, op)
	}
	return ob, nil
}

// For returns the resolution for target, another build of the same code
// (built with -ldflags=-s -w, whose build id differs): it checks the two
// builds have the same .gopclntab, so the same functions at the same
// offsets.
func (ob *OffsetsBuild) For(target *Binary) (*OffsetsBuild, error) {
	pcln, err := target.pclntabDigest()
	if err != nil {
		return nil, err
	}
	if pcln != ob.Pclntab {
		return nil, fmt.Errorf("%w: %s is not a build of the same code as %s (their function tables differ); extract from an unstripped build of the same source, Go version and flags", ErrOffsets, target.Path, ob.ExtractedFrom)
	}
	out := *ob
	out.BuildID = target.BuildID
	return &out, nil
}

// WriteOffsets adds builds to the offsets file at path (created if
// missing), replacing the entries of the same build ids, so one file can
// serve several builds.
func WriteOffsets(path string, builds ...*OffsetsBuild) error {
	off := &Offsets{Version: offsetsVersion}
	if _, err := os.Stat(path); err == nil {
		if off, err = ReadOffsets(path); err != nil {
			return err
		}
	}
	for _, b := range builds {
		off.Builds = slices.DeleteFunc(off.Builds, func(o OffsetsBuild) bool { return o.BuildID == b.BuildID })
		off.Builds = append(off.Builds, *b)
	}
	if len(off.Builds) > maxOffsetBuilds {
		return fmt.Errorf("write offsets %s: more than %d builds; start a new file", path, maxOffsetBuilds)
	}
	data, err := yaml.Marshal(off)
	if err != nil {
		return fmt.Errorf("write offsets %s: %w", path, err)
	}
	data = append([]byte("# Written by routerscope probes extract: probe locations for stripped builds.\n"), data...)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write offsets: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write offsets: %w", err)
	}
	return nil
}

// ReadOffsets reads and bounds-checks an offsets file.
func ReadOffsets(path string) (*Offsets, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read offsets: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxOffsetsBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read offsets %s: %w", path, err)
	}
	if len(data) > maxOffsetsBytes {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrOffsets, path, maxOffsetsBytes)
	}
	var off Offsets
	if err := strictyaml.Decode(data, &off); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrOffsets, path, err)
	}
	if off.Version != offsetsVersion {
		return nil, fmt.Errorf("%w: %s has version %d, this agent reads version %d; extract it again", ErrOffsets, path, off.Version, offsetsVersion)
	}
	if len(off.Builds) > maxOffsetBuilds {
		return nil, fmt.Errorf("%w: %s holds more than %d builds", ErrOffsets, path, maxOffsetBuilds)
	}
	return &off, nil
}

// OffsetsPath is where the offsets file of a probe file is looked for:
// beside it, with .offsets.yaml in place of its extension
// (semantic-router.yaml: semantic-router.offsets.yaml).
func OffsetsPath(specPath string) string {
	return strings.TrimSuffix(specPath, filepath.Ext(specPath)) + ".offsets.yaml"
}

// ResolveWithOffsets resolves spec for b, a binary without DWARF, from the
// offsets file at path: the entry for b's build id, extracted from the same
// probes. Function offsets are found again in b and must match the file's.
// A file for another build, or for changed probes, is refused with
// ErrOffsets saying which.
func ResolveWithOffsets(b *Binary, spec *Spec, path string) (*Program, error) {
	if err := ValidateSpec(spec); err != nil {
		return nil, err
	}
	off, err := ReadOffsets(path)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(off.Builds, func(o OffsetsBuild) bool { return o.BuildID == b.BuildID })
	if i < 0 {
		ids := make([]string, len(off.Builds))
		for j, o := range off.Builds {
			ids[j] = o.BuildID
		}
		return nil, fmt.Errorf("%w: %s has no entry for %s (build id %s; the file has %s): run `routerscope probes extract` on the unstripped build of this binary",
			ErrOffsets, path, b.Path, b.BuildID, strings.Join(ids, ", "))
	}
	ob := off.Builds[i]
	if ob.Spec != specDigest(spec) {
		return nil, fmt.Errorf("%w: %s was extracted from other probes than %s; run `routerscope probes extract` again", ErrOffsets, path, spec.Path)
	}
	if pcln, err := b.pclntabDigest(); err != nil {
		return nil, err
	} else if pcln != ob.Pclntab {
		return nil, fmt.Errorf("%w: %s: the entry for build id %s was made for other code than %s (function tables differ)", ErrOffsets, path, b.BuildID, b.Path)
	}
	if len(ob.Probes) != len(spec.Probes) {
		return nil, fmt.Errorf("%w: %s lists %d probes, the spec %d", ErrOffsets, path, len(ob.Probes), len(spec.Probes))
	}
	ids := map[string]int{}
	for i, p := range spec.Probes {
		ids[p.Span] = i
	}
	prog := &Program{Binary: b.Path, BuildID: b.BuildID}
	for i, p := range spec.Probes {
		r, err := b.offsetsProbe(i, p, ob.Probes[i])
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, probeWhere(i, p.Symbol), err)
		}
		r.ParentID = -1
		if p.Parent != "" {
			r.ParentID = ids[p.Parent]
		}
		prog.Probes = append(prog.Probes, r)
	}
	return prog, nil
}

// offsetsProbe rebuilds one Resolved from the file and b's own function
// table, checking what the file says against both.
func (b *Binary) offsetsProbe(id int, p Probe, op OffsetsProbe) (*Resolved, error) {
	if op.Symbol != p.Symbol {
		return nil, fmt.Errorf("%w: the file has %s at this index", ErrOffsets, op.Symbol)
	}
	fn, err := b.Function(p.Symbol)
	if err != nil {
		return nil, err
	}
	if fn.EntryOffset != op.EntryOffset || !slices.Equal(fn.ReturnOffsets, op.ReturnOffsets) {
		return nil, fmt.Errorf("%w: the function is at other offsets in %s than in the file", ErrOffsets, b.Path)
	}
	if len(fn.ReturnOffsets) == 0 {
		return nil, fmt.Errorf("%s has no RET instruction, so its span could never end: %w", p.Symbol, ErrNotSupported)
	}
	if len(op.Types) != len(p.Attributes) {
		return nil, fmt.Errorf("%w: %d attribute types for %d attributes", ErrOffsets, len(op.Types), len(p.Attributes))
	}
	r := &Resolved{ID: id, Spec: p, Address: fn.Address, SymbolOffset: fn.SymbolOffset, EntryOffset: fn.EntryOffset,
		ReturnOffsets: fn.ReturnOffsets, Entry: op.Entry, Return: op.Return, Error: op.Error}
	r.Spec.Attributes = slices.Clone(p.Attributes)
	if r.Spec.Kind == "" {
		r.Spec.Kind = "internal"
	}
	r.EndNext, r.EndFromEntry = endsNext(p), probeEnds(p).entry
	if err := resolveEndAt(b, p, r); err != nil {
		return nil, err
	}
	for i := range r.Spec.Attributes {
		r.Spec.Attributes[i].Type = op.Types[i]
	}
	for _, f := range append(slices.Clone(op.Entry), op.Return...) {
		switch {
		case f.Attr == AttrErrorMessage && p.Error != nil:
		case f.Attr < 0 || f.Attr >= len(p.Attributes) || p.Attributes[f.Attr].From == "":
			return nil, fmt.Errorf("%w: a value for attribute %d, which reads nothing", ErrOffsets, f.Attr)
		}
	}
	if (op.Error != nil) != (p.Error != nil) {
		return nil, fmt.Errorf("%w: the error rule does not match the spec", ErrOffsets)
	}
	// The kernel's limits, checked as Attach will.
	if _, err := encodeDescriptor(r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOffsets, err)
	}
	return r, nil
}

// ResolveAny resolves spec for b: from b's DWARF, or, when b has none, from
// the offsets file the spec names (Spec.Offsets), else the one beside the
// spec's file when it exists.
func ResolveAny(b *Binary, spec *Spec) (*Program, error) {
	if b.HasDWARF() || (spec.Path == "" && spec.Offsets == "") {
		return Resolve(b, spec)
	}
	path := spec.Offsets
	if path == "" {
		path = OffsetsPath(spec.Path)
	}
	if _, err := os.Stat(path); err != nil && spec.Offsets == "" {
		prog, rerr := Resolve(b, spec)
		if rerr != nil && errors.Is(rerr, ErrNoDWARF) {
			rerr = fmt.Errorf("%w\n(no offsets file %s: extract one from an unstripped build with `routerscope probes extract`)", rerr, path)
		}
		return prog, rerr
	}
	return ResolveWithOffsets(b, spec, path)
}

// HasDWARF reports whether the binary has DWARF debug info.
func (b *Binary) HasDWARF() bool {
	_, err := b.dwarfInfo()
	return err == nil
}

// pclntabDigest hashes the binary's .gopclntab section.
func (b *Binary) pclntabDigest() (string, error) {
	data, err := sectionData(b.elf, ".gopclntab")
	if err != nil {
		return "", fmt.Errorf("binary %s: %w (is it a Go binary?)", b.Path, err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// specDigest hashes the probes of a spec as YAML, so any change to a
// probe (symbol, attribute, source, type) changes it.
func specDigest(spec *Spec) string {
	data, err := yaml.Marshal(spec.Probes)
	if err != nil {
		// Probes are plain data; Marshal fails only on unsupported
		// values, which ParseSpec never produces.
		data = []byte(fmt.Sprint(spec.Probes))
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
