package export

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/agent/spans/spantest"
	"github.com/routerscope/routerscope/probes"
)

// TestStdoutGuideFormat: format: guide prints the guide's "Console
// Output" shape: Name, SpanContext, Attributes with plain values,
// Duration in nanoseconds.
func TestStdoutGuideFormat(t *testing.T) {
	cfg, err := config.Parse([]byte("observability:\n  tracing:\n    enabled: true\n    exporter:\n      type: stdout\n      format: guide\n"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	exp, err := NewExporter(context.Background(), cfg.Tracing.Exporter, &buf)
	if err != nil {
		t.Fatal(err)
	}
	evs := spantest.Request(1, 4, spantest.BaseTime)
	evs[2].Err = probes.ErrorValue{Failed: true, Type: "*fmt.wrapError", Message: "classifier down: timeout", Sentinel: "router.ErrDown"}
	replay(t, cfg, exp, evs)

	if !strings.HasPrefix(buf.String(), "{\n  \"Name\": \"semantic_router.classification\",\n  \"SpanContext\": {\n    \"TraceID\": ") {
		t.Errorf("not the guide's layout:\n%s", buf.String())
	}
	type span struct {
		Name        string
		SpanContext struct{ TraceID, SpanID string }
		Attributes  []struct {
			Key   string
			Value any
		}
		Status   struct{ Code, Description string }
		Duration int64
	}
	dec := json.NewDecoder(&buf)
	var spans []span
	for dec.More() {
		var raw map[string]json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatalf("not a JSON stream: %v", err)
		}
		var s span
		b, _ := json.Marshal(raw)
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		spans = append(spans, s)
	}
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	c := spans[0]
	tr, cs := spantest.TraceID(4), spantest.SpanID(104)
	if c.SpanContext.TraceID != hex.EncodeToString(tr[:]) || c.SpanContext.SpanID != hex.EncodeToString(cs[:]) {
		t.Errorf("span context %+v", c.SpanContext)
	}
	if c.Duration != int64(45900*time.Microsecond) {
		t.Errorf("duration %d", c.Duration)
	}
	attrs := map[string]any{}
	for _, a := range c.Attributes {
		attrs[a.Key] = a.Value
	}
	if attrs["category.name"] != "math" || attrs["classification.time_ms"] != float64(45) || attrs["error"] != true ||
		attrs["error.type"] != "router.ErrDown" {
		t.Errorf("attributes %v", attrs)
	}
	if c.Status.Code != "Error" || c.Status.Description != "classifier down: timeout" {
		t.Errorf("status %+v", c.Status)
	}
	if spans[1].Status.Code != "" {
		t.Errorf("root status %+v, want none", spans[1].Status)
	}
}

func TestStdoutFormatInvalid(t *testing.T) {
	_, err := config.Parse([]byte("observability:\n  tracing:\n    enabled: true\n    exporter:\n      type: stdout\n      format: yaml\n"))
	if err == nil || !strings.Contains(err.Error(), "exporter.format") || !strings.Contains(err.Error(), "sdk, guide") {
		t.Errorf("error %v", err)
	}
}
