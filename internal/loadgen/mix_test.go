package loadgen

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestMixIsReproducible(t *testing.T) {
	a, err := NewMix(DefaultShares(), 7)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewMix(DefaultShares(), 7)
	for i := range 200 {
		ra, rb := a.Next(), b.Next()
		if ra.Kind != rb.Kind || string(ra.Body) != string(rb.Body) {
			t.Fatalf("request %d differs between mixes of the same seed: %s vs %s", i, ra.Body, rb.Body)
		}
	}
}

func TestMixShares(t *testing.T) {
	m, err := NewMix(DefaultShares(), 3)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	counts := map[Kind]int{}
	for range n {
		counts[m.Next().Kind]++
	}
	total := 0
	for _, s := range DefaultShares() {
		total += s.Weight
	}
	for _, s := range DefaultShares() {
		want := float64(s.Weight) / float64(total)
		got := float64(counts[s.Kind]) / n
		if math.Abs(got-want) > 0.015 {
			t.Errorf("share of %s = %.3f, want %.3f", s.Kind, got, want)
		}
	}
}

func TestMixRequests(t *testing.T) {
	m, err := NewMix([]Share{{KindMath, 1}, {KindCacheHit, 1}, {KindStream, 1}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	ids := map[string]bool{}
	for range 300 {
		r := m.Next()
		var body chatBody
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatalf("body %s: %v", r.Body, err)
		}
		if body.Model != "auto" || len(body.Messages) != 1 || body.Messages[0].Role != "user" {
			t.Fatalf("unexpected body %s", r.Body)
		}
		if body.Stream != (r.Kind == KindStream) {
			t.Errorf("kind %s has stream=%v", r.Kind, body.Stream)
		}
		id := r.Header.Get("x-request-id")
		if ids[id] {
			t.Errorf("request id %q repeated", id)
		}
		ids[id] = true
		text := body.Messages[0].Content
		switch r.Kind {
		case KindCacheHit:
			if !contains(prompts[KindCacheHit], text) {
				t.Errorf("cache-hit prompt %q is not one of the fixed ones", text)
			}
		default:
			if seen[text] {
				t.Errorf("varied prompt repeated: %q", text)
			}
			seen[text] = true
			if !strings.Contains(text, "Consider case") {
				t.Errorf("prompt %q was not varied", text)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestNewMixRejects(t *testing.T) {
	for name, shares := range map[string][]Share{
		"empty":        nil,
		"zero weights": {{KindMath, 0}},
		"negative":     {{KindMath, -1}, {KindCode, 2}},
		"unknown kind": {{Kind("poetry"), 1}},
	} {
		if _, err := NewMix(shares, 1); err == nil {
			t.Errorf("%s: NewMix accepted %v", name, shares)
		}
	}
}
