package spans

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/routerscope/routerscope/probes"
)

// Attribute sources computed by the agent rather than read by the kernel.
const (
	fromDurationMS = "duration_ms"
	fromDurationUS = "duration_us"
	fromDurationNS = "duration_ns"
)

// isDuration tells whether an attribute's value is the span's duration.
func isDuration(from string) bool {
	return from == fromDurationMS || from == fromDurationUS || from == fromDurationNS
}

// durationAttr computes a duration attribute. The guide's *.time_ms
// attributes are integers of milliseconds, so the default is int64
// truncated to whole units (a 45.9 ms classification is 45); type: float
// gives the fractional value instead.
func durationAttr(a probes.Attribute, d time.Duration) attribute.KeyValue {
	var unit time.Duration
	switch a.From {
	case fromDurationMS:
		unit = time.Millisecond
	case fromDurationUS:
		unit = time.Microsecond
	default:
		unit = time.Nanosecond
	}
	if d < 0 {
		d = 0
	}
	if a.Type == "float" {
		return attribute.Float64(a.Name, float64(d)/float64(unit))
	}
	return attribute.Int64(a.Name, int64(d/unit))
}

// TruncatedSuffix names the companion attribute set to true beside an
// attribute whose string value (or a list element) was cut: "user.id"
// gets "user.id.truncated".
const TruncatedSuffix = ".truncated"

// valueAttr types a kernel-read value by the spec's declared type (or the
// value's own kind when none is declared) and applies the spec's map. ok is
// false when the kernel could not read the value: the attribute is left off
// rather than given a misleading zero.
func valueAttr(a probes.Attribute, v probes.Value) (kv attribute.KeyValue, ok bool) {
	if v.Missing || (a.OmitEmpty && isEmpty(v)) {
		return attribute.KeyValue{}, false
	}
	if len(a.Map) > 0 {
		s := formatValue(v)
		if m, found := a.Map[s]; found {
			s = m
		}
		return attribute.String(a.Name, s), true
	}
	switch a.Type {
	case "string":
		return attribute.String(a.Name, formatValue(v)), true
	case "int":
		if n, ok := intOf(v); ok {
			return attribute.Int64(a.Name, n), true
		}
	case "float":
		if f, ok := floatOf(v); ok {
			return attribute.Float64(a.Name, f), true
		}
	case "bool":
		if b, ok := boolOf(v); ok {
			return attribute.Bool(a.Name, b), true
		}
	case "string_list":
		if v.Kind == probes.KindStringSlice {
			return attribute.StringSlice(a.Name, v.Strs), true
		}
		return attribute.StringSlice(a.Name, []string{formatValue(v)}), true
	}
	// No declared type, or a value the declared type cannot hold: keep the
	// value's own kind so nothing read is lost.
	return nativeAttr(a.Name, v), true
}

func nativeAttr(name string, v probes.Value) attribute.KeyValue {
	switch v.Kind {
	case probes.KindInt:
		return attribute.Int64(name, v.Int)
	case probes.KindUint:
		if v.Uint > math.MaxInt64 {
			return attribute.String(name, strconv.FormatUint(v.Uint, 10))
		}
		return attribute.Int64(name, int64(v.Uint))
	case probes.KindBool:
		return attribute.Bool(name, v.Bool)
	case probes.KindFloat:
		return attribute.Float64(name, v.Float)
	case probes.KindStringSlice:
		return attribute.StringSlice(name, v.Strs)
	}
	return attribute.String(name, v.Str)
}

// isEmpty reports a zero value of its kind, for Attribute.OmitEmpty.
func isEmpty(v probes.Value) bool {
	switch v.Kind {
	case probes.KindString:
		return v.Str == ""
	case probes.KindStringSlice:
		return len(v.Strs) == 0
	case probes.KindInt:
		return v.Int == 0
	case probes.KindUint:
		return v.Uint == 0
	case probes.KindFloat:
		return v.Float == 0
	case probes.KindBool:
		return !v.Bool
	}
	return false
}

// formatValue is the string form a spec's map keys are written in:
// "true"/"false", decimal numbers, the string itself, a list joined by
// commas.
func formatValue(v probes.Value) string {
	switch v.Kind {
	case probes.KindInt:
		return strconv.FormatInt(v.Int, 10)
	case probes.KindUint:
		return strconv.FormatUint(v.Uint, 10)
	case probes.KindBool:
		return strconv.FormatBool(v.Bool)
	case probes.KindFloat:
		return strconv.FormatFloat(v.Float, 'g', -1, 64)
	case probes.KindStringSlice:
		return strings.Join(v.Strs, ",")
	}
	return v.Str
}

func intOf(v probes.Value) (int64, bool) {
	switch v.Kind {
	case probes.KindInt:
		return v.Int, true
	case probes.KindUint:
		return int64(v.Uint), v.Uint <= math.MaxInt64
	case probes.KindBool:
		if v.Bool {
			return 1, true
		}
		return 0, true
	case probes.KindFloat:
		return int64(v.Float), true
	case probes.KindString:
		n, err := strconv.ParseInt(v.Str, 10, 64)
		return n, err == nil
	}
	return 0, false
}

func floatOf(v probes.Value) (float64, bool) {
	switch v.Kind {
	case probes.KindFloat:
		return v.Float, true
	case probes.KindInt:
		return float64(v.Int), true
	case probes.KindUint:
		return float64(v.Uint), true
	case probes.KindString:
		f, err := strconv.ParseFloat(v.Str, 64)
		return f, err == nil
	}
	return 0, false
}

func boolOf(v probes.Value) (bool, bool) {
	switch v.Kind {
	case probes.KindBool:
		return v.Bool, true
	case probes.KindInt:
		return v.Int != 0, true
	case probes.KindUint:
		return v.Uint != 0, true
	case probes.KindString:
		b, err := strconv.ParseBool(v.Str)
		return b, err == nil
	}
	return false, false
}

// constAttr types a constant attribute from the spec (a YAML scalar or
// list).
func constAttr(a probes.Attribute) attribute.KeyValue {
	switch c := a.Value.(type) {
	case bool:
		if a.Type == "" || a.Type == "bool" {
			return attribute.Bool(a.Name, c)
		}
	case int:
		return numberConst(a, float64(c), int64(c))
	case int64:
		return numberConst(a, float64(c), c)
	case uint64:
		return numberConst(a, float64(c), int64(c))
	case float64:
		return numberConst(a, c, int64(c))
	case []any:
		strs := make([]string, len(c))
		for i, e := range c {
			strs[i] = fmt.Sprint(e)
		}
		return attribute.StringSlice(a.Name, strs)
	case []string:
		return attribute.StringSlice(a.Name, c)
	case string:
		v := probes.Value{Kind: probes.KindString, Str: c}
		if kv, _ := valueAttr(a, v); kv.Valid() {
			return kv
		}
	}
	return attribute.String(a.Name, fmt.Sprint(a.Value))
}

func numberConst(a probes.Attribute, f float64, n int64) attribute.KeyValue {
	switch a.Type {
	case "float":
		return attribute.Float64(a.Name, f)
	case "string":
		return attribute.String(a.Name, strconv.FormatFloat(f, 'g', -1, 64))
	case "", "int":
		if float64(n) == f {
			return attribute.Int64(a.Name, n)
		}
		if a.Type == "" {
			return attribute.Float64(a.Name, f)
		}
		return attribute.Int64(a.Name, n)
	}
	return attribute.String(a.Name, strconv.FormatFloat(f, 'g', -1, 64))
}
