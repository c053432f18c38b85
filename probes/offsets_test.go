package probes

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeFixtureSpec writes fixtureSpec beside where its offsets file goes.
func writeFixtureSpec(t *testing.T) (*Spec, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fixture.yaml")
	if err := os.WriteFile(path, []byte(fixtureSpec), 0o600); err != nil {
		t.Fatal(err)
	}
	spec, err := LoadSpec(path)
	if err != nil {
		t.Fatal(err)
	}
	return spec, path
}

// TestOffsetsStripped extracts the fixture spec from the full build and
// resolves it for the -s -w build (another build id, same code) and for a
// strip(1)ped copy (same build id): the result is what DWARF gives.
func TestOffsetsStripped(t *testing.T) {
	full := openFixture(t, variantFull)
	sw := openFixture(t, variantStripped)
	spec, specPath := writeFixtureSpec(t)
	want, err := Resolve(full, spec)
	if err != nil {
		t.Fatal(err)
	}
	if sw.HasDWARF() || !full.HasDWARF() || sw.BuildID == full.BuildID {
		t.Fatalf("fixture builds: -s -w has DWARF %v, build ids %s %s", sw.HasDWARF(), sw.BuildID, full.BuildID)
	}
	if _, err := Resolve(sw, spec); !errors.Is(err, ErrNoDWARF) {
		t.Fatalf("resolving the -s -w build needs DWARF: %v", err)
	}
	// Without an offsets file, ResolveAny says where it looked.
	if _, err := ResolveAny(sw, spec); !errors.Is(err, ErrNoDWARF) || !strings.Contains(err.Error(), OffsetsPath(specPath)) {
		t.Fatalf("no offsets file: %v", err)
	}

	ob, err := ExtractOffsets(full, spec)
	if err != nil {
		t.Fatal(err)
	}
	forSW, err := ob.For(sw)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteOffsets(OffsetsPath(specPath), ob, forSW); err != nil {
		t.Fatal(err)
	}
	// Writing again replaces the entries of the same builds.
	if err := WriteOffsets(OffsetsPath(specPath), forSW); err != nil {
		t.Fatal(err)
	}
	if off, err := ReadOffsets(OffsetsPath(specPath)); err != nil || len(off.Builds) != 2 {
		t.Fatalf("offsets file: %v %+v", err, off)
	}

	targets := []*Binary{sw}
	if _, err := exec.LookPath("strip"); err == nil {
		copyPath := filepath.Join(t.TempDir(), "stripped-copy")
		data, err := os.ReadFile(full.Path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(copyPath, data, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("strip", copyPath).CombinedOutput(); err != nil {
			t.Fatalf("strip: %v\n%s", err, out)
		}
		sc, err := OpenBinary(copyPath)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sc.Close() })
		if sc.HasDWARF() || sc.BuildID != full.BuildID {
			t.Fatalf("strip(1)ped copy: DWARF %v, build id %s, want none and %s", sc.HasDWARF(), sc.BuildID, full.BuildID)
		}
		targets = append(targets, sc)
	} else {
		t.Log("no strip(1): the stripped-copy case is not checked")
	}
	for _, target := range targets {
		got, err := ResolveAny(target, spec)
		if err != nil {
			t.Fatalf("%s: %v", target.Path, err)
		}
		if got.BuildID != target.BuildID || len(got.Probes) != len(want.Probes) {
			t.Fatalf("%s: program %+v", target.Path, got)
		}
		for i, w := range want.Probes {
			g := got.Probes[i]
			// Printed, because the file gives empty slices and maps
			// where Resolve leaves them nil.
			if fmt.Sprintf("%+v %+v %+v %+v", g.Spec, g.Entry, g.Return, g.ReturnOffsets) != fmt.Sprintf("%+v %+v %+v %+v", w.Spec, w.Entry, w.Return, w.ReturnOffsets) ||
				g.EntryOffset != w.EntryOffset || g.ParentID != w.ParentID || (g.Error == nil) != (w.Error == nil) ||
				(g.Error != nil && fmt.Sprintf("%+v", *g.Error) != fmt.Sprintf("%+v", *w.Error)) {
				t.Errorf("%s: probe %s:\n got %+v\nwant %+v", target.Path, w.Spec.Symbol, g, w)
			}
		}
	}
}

func TestOffsetsRefused(t *testing.T) {
	full := openFixture(t, variantFull)
	sw := openFixture(t, variantStripped)
	spec, specPath := writeFixtureSpec(t)
	ob, err := ExtractOffsets(full, spec)
	if err != nil {
		t.Fatal(err)
	}
	path := OffsetsPath(specPath)
	if err := WriteOffsets(path, ob); err != nil {
		t.Fatal(err)
	}
	// The -s -w build has another build id: refused, naming both.
	_, err = ResolveAny(sw, spec)
	if !errors.Is(err, ErrOffsets) || !strings.Contains(err.Error(), sw.BuildID) || !strings.Contains(err.Error(), full.BuildID) {
		t.Errorf("other build: %v", err)
	}
	// Another build of other code cannot borrow the offsets.
	other := *ob
	other.Pclntab = strings.Repeat("0", 64)
	if _, err := other.For(sw); !errors.Is(err, ErrOffsets) {
		t.Errorf("other code: %v", err)
	}
	// Changed probes need a new extraction.
	forSW, err := ob.For(sw)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	if err := WriteOffsets(path, forSW); err != nil {
		t.Fatal(err)
	}
	changed := *spec
	changed.Probes = append([]Probe(nil), spec.Probes...)
	changed.Probes[0].Kind = "internal"
	if _, err := ResolveAny(sw, &changed); !errors.Is(err, ErrOffsets) || !strings.Contains(err.Error(), "extract") {
		t.Errorf("changed spec: %v", err)
	}
	// A file edited by hand is checked, not trusted.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(string) string{
		"offset":  func(s string) string { return strings.Replace(s, "entry_offset: ", "entry_offset: 1", 1) },
		"version": func(s string) string { return strings.Replace(s, "version: 1", "version: 9", 1) },
		"unknown": func(s string) string { return strings.Replace(s, "version: 1", "version: 1\nextra: x", 1) },
	} {
		if err := os.WriteFile(path, []byte(edit(string(data))), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ResolveAny(sw, spec); !errors.Is(err, ErrOffsets) {
			t.Errorf("edited %s: %v\n%s", name, err, edit(string(data))[:600])
		}
	}
}

// TestOffsetsCoverResolved fails when Resolved gains a field: the offsets
// file must then carry it (OffsetsProbe, offsetsProbe) or this list must
// say why it need not.
func TestOffsetsCoverResolved(t *testing.T) {
	known := map[string]string{
		"ID": "the spec index", "Spec": "the spec, with Types", "Address": "pclntab", "SymbolOffset": "pclntab",
		"EntryOffset": "pclntab, checked", "ReturnOffsets": "pclntab, checked", "Entry": "file", "Return": "file",
		"Error": "file", "ParentID": "the spec", "EndNext": "the spec", "EndFromEntry": "the spec's sources",
		"EndAt": "pclntab, from the spec's end_at",
	}
	rt := reflect.TypeOf(Resolved{})
	for i := range rt.NumField() {
		if _, ok := known[rt.Field(i).Name]; !ok {
			t.Errorf("Resolved.%s is not carried by offsets files", rt.Field(i).Name)
		}
	}
}

// TestVerifyWithOffsets: verify on a stripped build reports what the agent
// will use, from the offsets file beside the spec.
func TestVerifyWithOffsets(t *testing.T) {
	full := openFixture(t, variantFull)
	sw := openFixture(t, variantStripped)
	spec, specPath := writeFixtureSpec(t)
	want, err := Verify(full, spec)
	if err != nil {
		t.Fatal(err)
	}
	ob, err := ExtractOffsets(full, spec)
	if err != nil {
		t.Fatal(err)
	}
	// A file for the other build only: every probe has the problem.
	if err := WriteOffsets(OffsetsPath(specPath), ob); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(sw, spec)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.Offsets != OffsetsPath(specPath) || len(rep.Probes) != len(spec.Probes) || !strings.Contains(rep.Probes[0].Problems[0], "no entry for") {
		t.Fatalf("offsets for another build:\n%s", rep)
	}
	forSW, err := ob.For(sw)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteOffsets(OffsetsPath(specPath), forSW); err != nil {
		t.Fatal(err)
	}
	rep, err = Verify(sw, spec)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want.Probes {
		g := rep.Probes[i]
		if len(g.Problems) != 0 || g.EntryOffset != w.EntryOffset || g.EntryCost != w.EntryCost || g.EntryInstruction != w.EntryInstruction ||
			fmt.Sprint(g.ReturnOffsets) != fmt.Sprint(w.ReturnOffsets) || len(g.Values) > len(w.Values) {
			t.Errorf("%s from offsets: %+v\nwith DWARF: %+v", w.Symbol, g, w)
		}
	}
	if !strings.Contains(rep.String(), "locations from "+OffsetsPath(specPath)) {
		t.Errorf("report:\n%s", rep)
	}
}
