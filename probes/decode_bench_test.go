package probes

import (
	"testing"
)

// BenchmarkDecode decodes a typical span record (a request's root: three
// strings and two integers at entry, a string and an integer at return, an
// error rule) into a reused Event: allocs/op is what decoding costs per
// span, one []Value for both halves and one string per string value, all
// kept by the span.
func BenchmarkDecode(b *testing.B) {
	p := &Resolved{ID: 0, Spec: Probe{Symbol: "main.route"}, ParentID: -1,
		Entry: []Fetch{
			{Attr: 0, Kind: KindString}, {Attr: 1, Kind: KindString}, {Attr: 2, Kind: KindString},
			{Attr: 3, Kind: KindInt, Size: 8}, {Attr: 4, Kind: KindInt, Size: 8},
		},
		Return: []Fetch{{Attr: 5, Kind: KindString}, {Attr: 6, Kind: KindInt, Size: 8}},
		Error:  &Fetch{Attr: -1, Kind: KindBool, Size: 1},
	}
	raw := newRecord(EventSpan, 0).entry(
		packed(KindString, 20, 0, "req-0123456789abcdef"),
		packed(KindString, 6, 0, "gpt-4o"),
		packed(KindString, 4, 0, "auto"),
		pscalar(KindInt, 512), pscalar(KindInt, 3),
	).ret(packed(KindString, 4, 0, "math"), pscalar(KindInt, 200)).err(pscalar(KindBool, 0)).bytes()
	d := decoder{probes: []*Resolved{p}}
	var ev Event
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := d.decodeInto(raw, &ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(raw)), "record-bytes")
}
