package probes

import "unicode/utf8"

// A string is cut where the kernel's copy ends (MaxStringBytes, or
// MaxElemBytes per []string element), or shorter where an attribute's
// max_bytes says so. A cut never ends inside a UTF-8 sequence: the bytes of
// a character the cut would split are dropped whole, so a truncated value
// is as valid as the program's own string and no U+FFFD appears where the
// copy ended. Value.Truncated records that anything was cut.

// cutRunes returns s without a trailing UTF-8 sequence that is incomplete
// (its leading byte announces more bytes than s holds). Other invalid
// bytes are left for the span record's repair.
func cutRunes(s string) string {
	// A sequence is at most utf8.UTFMax bytes: look no further back.
	for i := len(s) - 1; i >= 0 && i >= len(s)-utf8.UTFMax; i-- {
		c := s[i]
		if c < utf8.RuneSelf {
			return s // ASCII: nothing is cut inside a sequence
		}
		if !utf8.RuneStart(c) {
			continue // a continuation byte: its lead is further back
		}
		if !utf8.FullRuneInString(s[i:]) {
			return s[:i] // the sequence starting here was cut
		}
		return s
	}
	return s
}

// cutString cuts s to at most max bytes on a character boundary and says
// whether it cut anything.
func cutString(s string, max int) (string, bool) {
	if len(s) <= max {
		return s, false
	}
	return cutRunes(s[:max]), true
}

// Truncate cuts a string value, and each element of a string list, to at
// most max bytes on a UTF-8 character boundary, setting Truncated when it
// cut; max outside 1..MaxStringBytes, and other kinds, leave v as it is.
func Truncate(v Value, max int) Value {
	if max < 1 || max > MaxStringBytes {
		return v
	}
	var cut bool
	switch v.Kind {
	case KindString:
		v.Str, cut = cutString(v.Str, max)
	case KindStringSlice:
		strs := make([]string, len(v.Strs))
		for i, s := range v.Strs {
			var c bool
			strs[i], c = cutString(s, max)
			cut = cut || c
		}
		v.Strs = strs
	}
	v.Truncated = v.Truncated || cut
	return v
}

// cutCopies drops the split character at the end of each copy the kernel
// cut: the string at MaxStringBytes, list elements at MaxElemBytes (an
// element shorter than that was copied whole).
func cutCopies(v *Value) {
	switch v.Kind {
	case KindString:
		if len(v.Str) == MaxStringBytes {
			v.Str = cutRunes(v.Str)
		}
	case KindStringSlice:
		for i, s := range v.Strs {
			if len(s) == MaxElemBytes {
				v.Strs[i] = cutRunes(s)
			}
		}
	}
}
