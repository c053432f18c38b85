package export

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/agent/spans"
)

// NewOTLPPipeline builds a pipeline that encodes each batch of records
// straight into OTLP messages, grouped by resource, and uploads them with
// client (see NewTraceClient). The wire output is what the SDK's OTLP
// exporter sends for the same spans (ids, times, kinds, status, flags,
// attributes, resource, scope) without building SDK spans on the way.
// The pipeline starts the client and stops it at Shutdown.
func NewOTLPPipeline(ctx context.Context, cfg config.Config, client otlptrace.Client, onExportError func(error, int)) (*Pipeline, error) {
	if err := client.Start(ctx); err != nil {
		return nil, fmt.Errorf("start OTLP client: %w", err)
	}
	p, err := newPipeline(cfg, &otlpSink{client: client}, onExportError)
	if err != nil {
		_ = client.Stop(ctx)
		return nil, err
	}
	return p, nil
}

// otlpSink encodes batches with an otlpEncoder and uploads them.
type otlpSink struct {
	client otlptrace.Client
	enc    otlpEncoder
}

func (s *otlpSink) export(ctx context.Context, batch []queuedSpan) error {
	req := s.enc.encode(batch)
	err := s.client.UploadTraces(ctx, req)
	s.enc.release()
	return err
}

func (s *otlpSink) shutdown(ctx context.Context) error { return s.client.Stop(ctx) }

// otlpEncoder turns batches of records into OTLP messages. The messages
// are reused from batch to batch (the client has serialized a request by
// the time UploadTraces returns), so a steady stream of spans allocates
// only when a batch needs more messages than any batch before it: nothing
// per span. It is used by one goroutine at a time.
type otlpEncoder struct {
	scope *commonpb.InstrumentationScope

	rss    []*tracepb.ResourceSpans
	groups []*procResource
	ids    []byte
	kvSpan []*commonpb.KeyValue
	attrs  []attribute.KeyValue

	resSpans   pool[tracepb.ResourceSpans]
	scopeSpans pool[tracepb.ScopeSpans]
	spans      pool[tracepb.Span]
	statuses   pool[tracepb.Status]
	kvs        pool[commonpb.KeyValue]
	values     pool[commonpb.AnyValue]
	strs       pool[commonpb.AnyValue_StringValue]
	ints       pool[commonpb.AnyValue_IntValue]
	bools      pool[commonpb.AnyValue_BoolValue]
	doubles    pool[commonpb.AnyValue_DoubleValue]
	arrays     pool[commonpb.AnyValue_ArrayValue]
	arrayVals  pool[commonpb.ArrayValue]
	anyPtrs    []*commonpb.AnyValue
}

// pool hands out reusable values of T; release makes all of them
// available again. It grows to the largest batch and stays there.
type pool[T any] struct {
	items []*T
	used  int
}

func (p *pool[T]) get() *T {
	if p.used == len(p.items) {
		p.items = append(p.items, new(T))
	}
	v := p.items[p.used]
	p.used++
	return v
}

func (p *pool[T]) release() { p.used = 0 }

// Trace and span id bytes per span: trace id, span id, parent span id.
const idBytesPerSpan = 16 + 8 + 8

// encode returns the ResourceSpans of batch, one per resource in the
// order the resources first appear, each with one ScopeSpans of the
// agent's scope. The result is valid until release.
func (e *otlpEncoder) encode(batch []queuedSpan) []*tracepb.ResourceSpans {
	if e.scope == nil {
		e.scope = &commonpb.InstrumentationScope{Name: agentScope.Name, Version: agentScope.Version}
	}
	// Size the per-batch arenas up front: spans point into them, so they
	// must not move while the batch is built.
	nkv := 0
	for i := range batch {
		nkv += len(batch[i].rec.Attributes)
	}
	if cap(e.ids) < idBytesPerSpan*len(batch) {
		e.ids = make([]byte, 0, idBytesPerSpan*len(batch))
	}
	if cap(e.kvSpan) < nkv {
		e.kvSpan = make([]*commonpb.KeyValue, 0, nkv)
	}
	e.ids, e.kvSpan = e.ids[:0], e.kvSpan[:0]
	e.rss, e.groups = e.rss[:0], e.groups[:0]
	for i := range batch {
		q := &batch[i]
		ss := e.group(q.res)
		ss.Spans = append(ss.Spans, e.span(&q.rec))
	}
	return e.rss
}

// group returns the ScopeSpans of res in this batch, adding it at first
// sight. Batches hold few resources (one per traced process), so a scan
// beats a map.
func (e *otlpEncoder) group(res *procResource) *tracepb.ScopeSpans {
	for i, g := range e.groups {
		if g == res {
			return e.rss[i].ScopeSpans[0]
		}
	}
	pb, _ := res.enc.(*resourcepb.Resource)
	if pb == nil {
		pb = encodeResource(res)
		res.enc = pb
	}
	ss := e.scopeSpans.get()
	ss.Scope = e.scope
	ss.SchemaUrl = ""
	ss.Spans = ss.Spans[:0]
	rs := e.resSpans.get()
	rs.Resource = pb
	rs.SchemaUrl = res.res.SchemaURL()
	rs.ScopeSpans = append(rs.ScopeSpans[:0], ss)
	e.groups = append(e.groups, res)
	e.rss = append(e.rss, rs)
	return ss
}

// encodeResource is the OTLP form of a resource, built once per process.
func encodeResource(res *procResource) *resourcepb.Resource {
	var kvs []*commonpb.KeyValue
	for it := res.res.Iter(); it.Next(); {
		kv := it.Attribute()
		kvs = append(kvs, &commonpb.KeyValue{Key: string(kv.Key), Value: anyValue(kv.Value)})
	}
	return &resourcepb.Resource{Attributes: kvs}
}

// span fills a pooled Span from r; every field is set, since the message
// may hold the previous batch's values.
func (e *otlpEncoder) span(r *spans.SpanRecord) *tracepb.Span {
	s := e.spans.get()
	flags := uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)
	if r.Sampled {
		flags |= uint32(trace.FlagsSampled)
	}
	s.TraceId = e.id(r.TraceID[:])
	s.SpanId = e.id(r.SpanID[:])
	s.ParentSpanId = nil
	if r.ParentSpanID.IsValid() {
		s.ParentSpanId = e.id(r.ParentSpanID[:])
		if r.RemoteParent {
			flags |= uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
		}
	}
	s.TraceState = ""
	if r.TraceState.Len() > 0 {
		// Only a root with a remote parent has one (validated on entry).
		s.TraceState = r.TraceState.String()
	}
	s.Flags = flags
	s.Name = r.Name
	s.Kind = otlpKind(r.Kind)
	s.StartTimeUnixNano = unixNano(r)
	s.EndTimeUnixNano = uint64(max(0, r.End.UnixNano()))
	s.Events, s.DroppedEventsCount = nil, 0
	s.Links, s.DroppedLinksCount = nil, 0
	st := e.statuses.get()
	st.Code, st.Message = tracepb.Status_STATUS_CODE_UNSET, ""
	if r.Failed {
		st.Code, st.Message = tracepb.Status_STATUS_CODE_ERROR, r.StatusMessage
	}
	s.Status = st
	attrs, dropped := exportAttrs(r.Attributes, e.attrs)
	if len(attrs) > 0 && &attrs[0] != &r.Attributes[0] {
		e.attrs = attrs[:0] // keep the grown scratch buffer
	}
	s.DroppedAttributesCount = uint32(dropped)
	s.Attributes = nil
	if len(attrs) > 0 {
		start := len(e.kvSpan)
		for _, kv := range attrs {
			e.kvSpan = append(e.kvSpan, e.keyValue(kv))
		}
		s.Attributes = e.kvSpan[start:len(e.kvSpan):len(e.kvSpan)]
	}
	return s
}

func unixNano(r *spans.SpanRecord) uint64 { return uint64(max(0, r.Start.UnixNano())) }

// id copies an id into the batch's id arena (sized by encode) and returns
// its bytes there.
func (e *otlpEncoder) id(b []byte) []byte {
	start := len(e.ids)
	e.ids = append(e.ids, b...)
	return e.ids[start:len(e.ids):len(e.ids)]
}

func (e *otlpEncoder) keyValue(kv attribute.KeyValue) *commonpb.KeyValue {
	out := e.kvs.get()
	out.Key = string(kv.Key)
	out.Value = e.value(kv.Value)
	return out
}

// value fills a pooled AnyValue; the scalar kinds and string slices (what
// span attributes carry) are pooled too, rarer kinds are built fresh.
func (e *otlpEncoder) value(v attribute.Value) *commonpb.AnyValue {
	av := e.values.get()
	switch v.Type() {
	case attribute.STRING:
		w := e.strs.get()
		w.StringValue = v.AsString()
		av.Value = w
	case attribute.INT64:
		w := e.ints.get()
		w.IntValue = v.AsInt64()
		av.Value = w
	case attribute.BOOL:
		w := e.bools.get()
		w.BoolValue = v.AsBool()
		av.Value = w
	case attribute.FLOAT64:
		w := e.doubles.get()
		w.DoubleValue = v.AsFloat64()
		av.Value = w
	case attribute.STRINGSLICE:
		strs := v.AsStringSlice() // a copy: the one allocation of a slice attribute
		arr := e.arrayVals.get()
		start := len(e.anyPtrs)
		for _, s := range strs {
			w := e.strs.get()
			w.StringValue = s
			el := e.values.get()
			el.Value = w
			e.anyPtrs = append(e.anyPtrs, el)
		}
		// anyPtrs may move as it grows; the array keeps its own view,
		// which stays valid since nothing rewrites it before release.
		arr.Values = e.anyPtrs[start:len(e.anyPtrs):len(e.anyPtrs)]
		w := e.arrays.get()
		w.ArrayValue = arr
		av.Value = w
	default:
		av.Value = anyValue(v).Value
	}
	return av
}

// release makes the batch's messages reusable.
func (e *otlpEncoder) release() {
	for _, p := range []interface{ release() }{&e.resSpans, &e.scopeSpans, &e.spans, &e.statuses, &e.kvs,
		&e.values, &e.strs, &e.ints, &e.bools, &e.doubles, &e.arrays, &e.arrayVals} {
		p.release()
	}
	clear(e.rss)
	e.anyPtrs = e.anyPtrs[:0]
}

func otlpKind(k trace.SpanKind) tracepb.Span_SpanKind {
	switch k {
	case trace.SpanKindInternal:
		return tracepb.Span_SPAN_KIND_INTERNAL
	case trace.SpanKindClient:
		return tracepb.Span_SPAN_KIND_CLIENT
	case trace.SpanKindServer:
		return tracepb.Span_SPAN_KIND_SERVER
	case trace.SpanKindProducer:
		return tracepb.Span_SPAN_KIND_PRODUCER
	case trace.SpanKindConsumer:
		return tracepb.Span_SPAN_KIND_CONSUMER
	}
	return tracepb.Span_SPAN_KIND_UNSPECIFIED
}

// anyValue is the OTLP form of any attribute value, built fresh: for
// resources (once per process) and the rare attribute kinds.
func anyValue(v attribute.Value) *commonpb.AnyValue {
	av := &commonpb.AnyValue{}
	switch v.Type() {
	case attribute.BOOL:
		av.Value = &commonpb.AnyValue_BoolValue{BoolValue: v.AsBool()}
	case attribute.INT64:
		av.Value = &commonpb.AnyValue_IntValue{IntValue: v.AsInt64()}
	case attribute.FLOAT64:
		av.Value = &commonpb.AnyValue_DoubleValue{DoubleValue: v.AsFloat64()}
	case attribute.STRING:
		av.Value = &commonpb.AnyValue_StringValue{StringValue: v.AsString()}
	case attribute.BOOLSLICE:
		av.Value = array(v.AsBoolSlice(), func(b bool) *commonpb.AnyValue {
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: b}}
		})
	case attribute.INT64SLICE:
		av.Value = array(v.AsInt64Slice(), func(i int64) *commonpb.AnyValue {
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: i}}
		})
	case attribute.FLOAT64SLICE:
		av.Value = array(v.AsFloat64Slice(), func(f float64) *commonpb.AnyValue {
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: f}}
		})
	case attribute.STRINGSLICE:
		av.Value = array(v.AsStringSlice(), func(s string) *commonpb.AnyValue {
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
		})
	case attribute.EMPTY:
	default:
		// As the SDK's exporter encodes a type it does not know.
		av.Value = &commonpb.AnyValue_StringValue{StringValue: "INVALID"}
	}
	return av
}

func array[T any](vals []T, conv func(T) *commonpb.AnyValue) *commonpb.AnyValue_ArrayValue {
	out := make([]*commonpb.AnyValue, len(vals))
	for i, v := range vals {
		out[i] = conv(v)
	}
	return &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: out}}
}
