package export

import "go.opentelemetry.io/otel/attribute"

// spanAttributeLimit is the SDK's default attribute count limit per span:
// exported spans keep at most this many attributes, as they did when they
// were replayed through the SDK.
const spanAttributeLimit = 128

// dedupScanMax is the attribute count up to which duplicates are found by
// comparing pairs, which beats building a map for the few attributes a
// span has.
const dedupScanMax = 32

// exportAttrs returns a span's attributes as the SDK would export them:
// invalid ones dropped, a key set twice keeps its first position and its
// last value, at most spanAttributeLimit keys. dropped counts what was
// left out. The common case (no duplicate, nothing invalid, under the
// limit) returns attrs itself and allocates nothing; otherwise the result
// is built in buf's storage.
func exportAttrs(attrs []attribute.KeyValue, buf []attribute.KeyValue) (out []attribute.KeyValue, dropped int) {
	if clean(attrs) {
		return attrs, 0
	}
	out = buf[:0]
	var index map[attribute.Key]int
	if len(attrs) > dedupScanMax {
		index = make(map[attribute.Key]int, len(attrs))
	}
	find := func(k attribute.Key) int {
		if index != nil {
			if i, ok := index[k]; ok {
				return i
			}
			return -1
		}
		for i := range out {
			if out[i].Key == k {
				return i
			}
		}
		return -1
	}
	for _, kv := range attrs {
		if !kv.Valid() {
			dropped++
			continue
		}
		if i := find(kv.Key); i >= 0 {
			out[i] = kv
			continue
		}
		if len(out) >= spanAttributeLimit {
			dropped++
			continue
		}
		if index != nil {
			index[kv.Key] = len(out)
		}
		out = append(out, kv)
	}
	return out, dropped
}

// clean tells whether attrs are all valid, unique and within the limit.
func clean(attrs []attribute.KeyValue) bool {
	if len(attrs) > spanAttributeLimit || len(attrs) > dedupScanMax {
		return false
	}
	for i, kv := range attrs {
		if !kv.Valid() {
			return false
		}
		for _, prev := range attrs[:i] {
			if prev.Key == kv.Key {
				return false
			}
		}
	}
	return true
}
