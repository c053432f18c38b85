package agent

import (
	"fmt"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"

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
		if got := repairUTF8(tc.in); got != tc.want {
			t.Errorf("repairUTF8(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestAssemblerRepairsEveryString: each string a span carries (attribute
// values, string lists, the status message, the error type) leaves the
// assembler as valid UTF-8, and valid values are untouched.
func TestAssemblerRepairsEveryString(t *testing.T) {
	var c collector
	a := NewAssembler(c.emit, time.Hour)
	evs := request(1, 1, baseTime)
	evs[0].Values = []probes.Value{str("evil-\xff")}
	evs[2].Values = []probes.Value{str("ma\xe2\x82"), bl(false), strs("email", "ph\xffone"), flt(0.93)}
	evs[2].Err = probes.ErrorValue{Failed: true, Type: "*main.\xfeErr", Message: "bad \xc3"}
	for _, ev := range evs {
		a.Handle(ev)
	}
	recs := c.all()
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
	child, root := attrMap(recs[0].Attributes), attrMap(recs[1].Attributes)
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

// TestInvalidUTF8DoesNotLoseTheBatch is the case: a few requests
// with invalid UTF-8 among good ones, all in one OTLP batch. Unrepaired,
// the exporter cannot marshal the batch and every span in it is lost.
func TestInvalidUTF8DoesNotLoseTheBatch(t *testing.T) {
	rcv := startReceiver(t)
	cfg := otlpConfig(rcv.Endpoint())
	var evs []probes.Event
	const n = 50
	for i := range n {
		req := request(uint32(100+i), byte(i), baseTime.Add(time.Duration(i)*time.Millisecond))
		if i%10 == 3 {
			req[0].Values = []probes.Value{str(fmt.Sprintf("evil-%d-\xff", i))}
		}
		evs = append(evs, req...)
	}
	pipe := replay(t, cfg, nil, evs)
	if got := len(rcv.Spans()); got != 2*n {
		t.Fatalf("collector received %d spans of %d; pipeline %+v", got, 2*n, pipe.Stats())
	}
	if st := pipe.Stats(); st.Failed != 0 || st.Exported != 2*n {
		t.Errorf("stats %+v", st)
	}
}
