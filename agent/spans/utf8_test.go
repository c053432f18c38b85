package spans_test

import (
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"

	"github.com/routerscope/routerscope/agent/spans"
	"github.com/routerscope/routerscope/agent/spans/spantest"
	"github.com/routerscope/routerscope/probes"
)

func TestRepairUTF8(t *testing.T) {
	euro := "€" // three bytes: a 128-byte copy can end after one or two
	cases := []struct{ in, want string }{
		{"plain", "plain"},
		{"", ""},
		{"évité ✓", "évité ✓"},
		{"evil-\xff", "evil-\uFFFD"},
		{"cut " + euro[:2], "cut \uFFFD"},
		{"\xff\xfe\xfd mid \xc0", "\uFFFD mid \uFFFD"},
	}
	for _, tc := range cases {
		if got := spans.RepairUTF8(tc.in); got != tc.want {
			t.Errorf("repairUTF8(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestAssemblerRepairsEveryString: each string a span carries (attribute
// values, string lists, the status message, the error type) leaves the
// assembler as valid UTF-8, and valid values are untouched.
func TestAssemblerRepairsEveryString(t *testing.T) {
	var c spantest.Collector
	a := spans.NewAssembler(c.Emit, time.Hour)
	evs := spantest.Request(1, 1, spantest.BaseTime)
	evs[0].Values = []probes.Value{spantest.Str("evil-\xff")}
	evs[2].Values = []probes.Value{spantest.Str("ma\xe2\x82"), spantest.Bool(false), spantest.Strs("email", "ph\xffone"), spantest.Float(0.93)}
	evs[2].Err = probes.ErrorValue{Failed: true, Type: "*main.\xfeErr", Message: "bad \xc3"}
	for _, ev := range evs {
		a.Handle(ev)
	}
	recs := c.All()
	if len(recs) != 2 {
		t.Fatalf("%d spans, want 2", len(recs))
	}
	for _, r := range recs {
		if !utf8.ValidString(r.Name) || !utf8.ValidString(r.StatusMessage) {
			t.Errorf("%s: invalid name or status %q", r.Name, r.StatusMessage)
		}
		for _, kv := range r.Attributes {
			if !utf8.ValidString(string(kv.Key)) {
				t.Errorf("%s: invalid key %q", r.Name, kv.Key)
			}
			switch kv.Value.Type() {
			case attribute.STRING:
				if !utf8.ValidString(kv.Value.AsString()) {
					t.Errorf("%s: %s = %q is invalid UTF-8", r.Name, kv.Key, kv.Value.AsString())
				}
			case attribute.STRINGSLICE:
				for _, s := range kv.Value.AsStringSlice() {
					if !utf8.ValidString(s) {
						t.Errorf("%s: %s has invalid %q", r.Name, kv.Key, s)
					}
				}
			}
		}
	}
	child, root := spantest.AttrMap(recs[0].Attributes), spantest.AttrMap(recs[1].Attributes)
	if got := child["category.name"].AsString(); got != "ma\uFFFD" {
		t.Errorf("category.name = %q, want the cut character replaced", got)
	}
	if got := child["pii.types"].AsStringSlice(); len(got) != 2 || got[0] != "email" || got[1] != "ph\uFFFDone" {
		t.Errorf("pii.types = %q", got)
	}
	if recs[0].StatusMessage != "bad \uFFFD" {
		t.Errorf("status = %q", recs[0].StatusMessage)
	}
	if got := root["request.id"].AsString(); got != "evil-\uFFFD" {
		t.Errorf("request.id = %q, want evil-\uFFFD", got)
	}
}

// FuzzRepairUTF8: the repair always yields valid UTF-8 and leaves valid
// input unchanged.
func FuzzRepairUTF8(f *testing.F) {
	f.Add("evil-\xff")
	f.Add("cut \xe2\x82")
	f.Add("évité ✓")
	f.Fuzz(func(t *testing.T, s string) {
		got := spans.RepairUTF8(s)
		if !utf8.ValidString(got) {
			t.Fatalf("repair of %q is invalid: %q", s, got)
		}
		if utf8.ValidString(s) && got != s {
			t.Fatalf("valid %q changed to %q", s, got)
		}
	})
}
