package probes

import (
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCutRunes(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"abc", "abc"},
		{"ab\u00e9", "ab\u00e9"},                     // complete 2-byte
		{"ab\xc3", "ab"},                             // cut 2-byte
		{"ab\u20ac", "ab\u20ac"},                     // complete 3-byte
		{"ab\xe2\x82", "ab"},                         // cut 3-byte
		{"ab\xe2", "ab"},                             // cut 3-byte after its lead
		{"ab\U0001F600", "ab\U0001F600"},             // complete 4-byte
		{"ab\xf0\x9f\x98", "ab"},                     // cut 4-byte
		{"ab\xff", "ab\xff"},                         // invalid, not cut: left for repair
		{"ab\x80\x80\x80\x80", "ab\x80\x80\x80\x80"}, // stray continuations
	} {
		if got := cutRunes(tc.in); got != tc.want {
			t.Errorf("cutRunes(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestTruncate: max_bytes cuts strings and list elements on character
// boundaries and says so; values within the limit are untouched.
func TestTruncate(t *testing.T) {
	v := Truncate(Value{Kind: KindString, Str: "h\u00e9llo w\u00f6rld"}, 3)
	if v.Str != "h\u00e9" || !v.Truncated {
		t.Errorf("Truncate to 3 = %+v, want %q truncated", v, "h\u00e9")
	}
	v = Truncate(Value{Kind: KindString, Str: "h\u00e9llo"}, 2) // would split é
	if v.Str != "h" || !v.Truncated {
		t.Errorf("Truncate to 2 = %+v, want %q truncated", v, "h")
	}
	v = Truncate(Value{Kind: KindString, Str: "short"}, 64)
	if v.Str != "short" || v.Truncated {
		t.Errorf("Truncate within the limit = %+v", v)
	}
	l := Truncate(Value{Kind: KindStringSlice, Strs: []string{"ab", "\u20ac\u20ac"}}, 4)
	if len(l.Strs) != 2 || l.Strs[0] != "ab" || l.Strs[1] != "\u20ac" || !l.Truncated {
		t.Errorf("Truncate list = %+v", l)
	}
	for _, max := range []int{0, -1, MaxStringBytes + 1} {
		if v := Truncate(Value{Kind: KindString, Str: strings.Repeat("x", 200)}, max); len(v.Str) != 200 || v.Truncated {
			t.Errorf("Truncate with max %d changed the value", max)
		}
	}
}

// TestDecodeCutsAtCharacterBoundary: the kernel copies MaxStringBytes of a
// longer string (MaxElemBytes of a list element) whatever falls there;
// the decoded value ends on a whole character and is marked truncated.
func TestDecodeCutsAtCharacterBoundary(t *testing.T) {
	// 127 ASCII bytes then a 2-byte character: the copy ends inside it.
	long := strings.Repeat("a", MaxStringBytes-1) + "\u00e9tc"
	hdr := make([]byte, valData)
	hdr[valFlags] = valTruncated
	hdr[valKind] = byte(KindString)
	binary.LittleEndian.PutUint16(hdr[valLen:], MaxStringBytes)
	v := decodeValue(Fetch{Kind: KindString}, hdr, []byte(long[:MaxStringBytes]))
	if v.Str != long[:MaxStringBytes-1] || !v.Truncated || !utf8.ValidString(v.Str) {
		t.Errorf("decoded %q (truncated %v), want the 127 ASCII bytes, truncated", v.Str, v.Truncated)
	}

	// List: element 0 cut inside a 3-byte character, element 1 whole.
	hdr = make([]byte, valData)
	hdr[valFlags] = valTruncated
	hdr[valKind] = byte(KindStringSlice)
	binary.LittleEndian.PutUint16(hdr[valLen:], 2)
	e0 := strings.Repeat("b", MaxElemBytes-2) + "\u20ac"
	hdr[valElemLen] = MaxElemBytes
	hdr[valElemLen+1] = 2
	v = decodeValue(Fetch{Kind: KindStringSlice}, hdr, []byte(e0[:MaxElemBytes]+"ok"))
	if len(v.Strs) != 2 || v.Strs[0] != e0[:MaxElemBytes-2] || v.Strs[1] != "ok" || !v.Truncated {
		t.Errorf("decoded list %q (truncated %v)", v.Strs, v.Truncated)
	}
}
