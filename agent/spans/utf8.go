package spans

import (
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
)

// Every string in a span record was read from another program (a header,
// a probed field cut at the kernel's copy limit, an error's text) and may
// be invalid UTF-8: "evil-\xff", or a 128-byte copy that ends inside a
// multibyte character. OTLP's protobuf strings must be valid UTF-8, and
// one bad string fails the marshalling of the whole batch, so anyone who
// can send a request could switch tracing off for everyone. repairRecord
// therefore rewrites every string of a finished record (name, status
// message, attribute keys, string and string-list values) before it
// reaches any exporter or printer: each run of invalid bytes becomes U+FFFD, the
// replacement character, and valid text is left as it is (no copy).

// repairRecord makes every string in r valid UTF-8.
func repairRecord(r *SpanRecord) {
	r.Name = repairUTF8(r.Name)
	r.StatusMessage = repairUTF8(r.StatusMessage)
	for i, kv := range r.Attributes {
		if fixed, changed := repairAttr(kv); changed {
			r.Attributes[i] = fixed
		}
	}
}

// repairUTF8 returns s with each run of invalid bytes replaced by U+FFFD; a valid
// s is returned as is.
func repairUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// repairAttr repairs one attribute's key and string values; changed is
// false when it was valid already.
func repairAttr(kv attribute.KeyValue) (attribute.KeyValue, bool) {
	key := attribute.Key(repairUTF8(string(kv.Key)))
	changed := key != kv.Key
	switch kv.Value.Type() {
	case attribute.STRING:
		s := kv.Value.AsString()
		if fixed := repairUTF8(s); changed || fixed != s {
			return key.String(fixed), true
		}
	case attribute.STRINGSLICE:
		strs := kv.Value.AsStringSlice()
		bad := changed
		for _, s := range strs {
			if !utf8.ValidString(s) {
				bad = true
				break
			}
		}
		if bad {
			fixed := make([]string, len(strs))
			for i, s := range strs {
				fixed[i] = repairUTF8(s)
			}
			return key.StringSlice(fixed), true
		}
	default:
		if changed {
			return attribute.KeyValue{Key: key, Value: kv.Value}, true
		}
	}
	return kv, false
}
