package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/agent/export"
	"github.com/routerscope/routerscope/agent/spans/spantest"
	"github.com/routerscope/routerscope/probes"
)

// TestRenderTrees feeds real stdout exporter output into renderTrees.
func TestRenderTrees(t *testing.T) {
	var out bytes.Buffer
	exp, err := stdouttrace.New(stdouttrace.WithWriter(&out), stdouttrace.WithPrettyPrint())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	tr := tp.Tracer("test")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx, root := tr.Start(context.Background(), "root", trace.WithTimestamp(t0))
	_, b := tr.Start(ctx, "second", trace.WithTimestamp(t0.Add(2*time.Millisecond)))
	b.SetAttributes(attribute.StringSlice("pii.types", []string{"EMAIL_ADDRESS", "US_SSN"}))
	b.SetStatus(codes.Error, "boom")
	b.End(trace.WithTimestamp(t0.Add(3 * time.Millisecond)))
	cctx, a := tr.Start(ctx, "first", trace.WithTimestamp(t0.Add(time.Millisecond)))
	a.SetAttributes(attribute.String("category.name", "computer science"), attribute.Int("n", 7))
	_, g := tr.Start(cctx, "grandchild", trace.WithTimestamp(t0.Add(time.Millisecond)))
	g.End(trace.WithTimestamp(t0.Add(2 * time.Millisecond)))
	a.End(trace.WithTimestamp(t0.Add(2 * time.Millisecond)))
	root.End(trace.WithTimestamp(t0.Add(5 * time.Millisecond)))
	_, other := tr.Start(context.Background(), "other-trace", trace.WithTimestamp(t0.Add(time.Second)))
	other.End(trace.WithTimestamp(t0.Add(time.Second + time.Millisecond)))
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	var got bytes.Buffer
	if err := renderTrees(&out, &got); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(got.String()), "\n")
	want := []string{
		"trace " + root.SpanContext().TraceID().String(),
		"root  5ms",
		`├─ first  1ms category.name="computer science" n=7`,
		"│  └─ grandchild  1ms",
		"└─ second  1ms  ERROR(boom) pii.types=[EMAIL_ADDRESS,US_SSN]",
		"",
		"trace " + other.SpanContext().TraceID().String(),
		"other-trace  1ms",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", got.String(), strings.Join(want, "\n"))
	}
}

func TestRenderTreesBadInput(t *testing.T) {
	err := renderTrees(strings.NewReader(`{"Name": "a"} {"Name": `), &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "read span 2") {
		t.Errorf("err = %v, want it to name span 2", err)
	}
}

// TestTreeReadsBothStdoutFormats: `routerscope tree` draws the guide format
// exactly as it draws the SDK's.
func TestTreeReadsBothStdoutFormats(t *testing.T) {
	render := func(format string) string {
		cfg := config.DefaultConfig()
		cfg.Tracing.Exporter.Format = format
		var buf bytes.Buffer
		exp, err := export.NewExporter(context.Background(), cfg.Tracing.Exporter, &buf)
		if err != nil {
			t.Fatal(err)
		}
		pipe, err := export.NewPipeline(cfg, exp, nil)
		if err != nil {
			t.Fatal(err)
		}
		evs := spantest.Request(1, 4, spantest.BaseTime)
		evs[2].Err = probes.ErrorValue{Failed: true, Type: "*errors.errorString", Message: "classifier down"}
		spantest.Feed(pipe.Emit, evs)
		if err := pipe.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := renderTrees(&buf, &out); err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		return out.String()
	}
	sdk, guide := render(config.StdoutFormatSDK), render(config.StdoutFormatGuide)
	if sdk != guide || !strings.Contains(sdk, "└─ semantic_router.classification  45.9ms  ERROR(classifier down)") {
		t.Errorf("trees differ or lack the child:\n--- sdk\n%s--- guide\n%s", sdk, guide)
	}
}
