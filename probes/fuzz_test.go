package probes

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Fuzz tests of the parsers fed by input the capture engine does not
// control: ring buffer records (written by kernel programs that read
// another process's memory), probe files and their `from` field paths.
// The seed corpora are in testdata/fuzz; `make fuzz` (called by `make
// test`) runs each target for a few seconds.

// fuzzProbe reads one value of every kind at entry and at return, and
// an error, so a record exercises every decoding path.
func fuzzProbe() *Resolved {
	kinds := []ValueKind{KindString, KindInt, KindBool, KindFloat, KindStringSlice, KindUint}
	p := &Resolved{ID: 0, Spec: Probe{Symbol: "main.f", Span: "f"}, ParentID: -1}
	for i, k := range kinds {
		size := uint8(8)
		if k == KindBool {
			size = 1
		}
		p.Entry = append(p.Entry, Fetch{Attr: i, Kind: k, Size: size})
		p.Return = append(p.Return, Fetch{Attr: len(kinds) + i, Kind: k, Size: size})
	}
	p.Error = &Fetch{Attr: -1, Kind: KindError, Size: 16}
	return p
}

// FuzzDecodeEvent: a record of any bytes decodes, or fails with
// ErrBadEvent; never a panic or a read past the record, and never more
// values than the probe fetches.
func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, evLen))
	f.Add(make([]byte, evLen+valData))
	p := fuzzProbe()
	d := decoder{probes: []*Resolved{p}, itabType: func(uint64) string { return "*errors.errorString" }}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := d.decode(raw)
		if err != nil {
			if !errors.Is(err, ErrBadEvent) {
				t.Fatalf("error without ErrBadEvent: %v", err)
			}
			return
		}
		if len(ev.Values) > len(p.Entry)+len(p.Return) {
			t.Fatalf("%d values for %d fetches", len(ev.Values), len(p.Entry)+len(p.Return))
		}
		for _, v := range ev.Values {
			if len(v.Str) > len(raw) {
				t.Fatalf("a string of %d bytes from a record of %d", len(v.Str), len(raw))
			}
		}
	})
}

// FuzzParseSource: a `from` expression parses, or fails; a parsed one
// prints back to an expression that parses to the same source (the
// field path included).
func FuzzParseSource(f *testing.F) {
	for _, s := range []string{"arg:req", "arg:0.Meta.User", "receiver.cfg.Name", "return:1", "return:0.Choices", "duration_ms", "arg:req.", "arg:-1", "return:x", "arg:é.ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, from string) {
		s, err := parseSource(from)
		if err != nil {
			return
		}
		again, err := parseSource(s.String())
		if err != nil {
			t.Fatalf("%q parsed, but its form %q does not: %v", from, s.String(), err)
		}
		if !reflect.DeepEqual(s, again) {
			t.Fatalf("%q -> %+v -> %q -> %+v", from, s, s.String(), again)
		}
	})
}

// FuzzSpecErrorsBounded: a probe file of any content parses or fails
// with ErrInvalidSpec, and the message stays bounded however many
// problems the file has (FuzzParseSpec checks what is accepted).
func FuzzSpecErrorsBounded(f *testing.F) {
	f.Add([]byte("probes:\n  - symbol: main.(*Router).classify\n    span: semantic_router.classification\n    attributes:\n      - {name: category.name, from: return:0.Category}\n      - {name: t, from: duration_ms}\n    error: {from: return:1}\n"))
	f.Add([]byte("probes:\n  - {symbol: main.a, span: a, parent: b}\n  - {symbol: main.b, span: b, parent: a}\n"))
	f.Add([]byte("probes: [1, 2, {symbol: \"\"}]\ninclude: [x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := ParseSpec(data, "fuzz.yaml")
		if err == nil {
			return
		}
		if !errors.Is(err, ErrInvalidSpec) {
			t.Fatalf("error without ErrInvalidSpec: %v", err)
		}
		if n := strings.Count(err.Error(), "\n"); n > maxReportedErrors {
			t.Fatalf("%d lines of errors", n+1)
		}
	})
}
