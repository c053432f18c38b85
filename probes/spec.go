package probes

// Spec is one probe file: the probes to attach to a binary.
//
//	probes:
//	  - symbol: github.com/routerscope/routerscope/router.(*Router).classify
//	    span: semantic_router.classification
//	    kind: internal
//	    attributes:
//	      - {name: category.name, from: "return:0.Category", type: string}
//	      - {name: classification.time_ms, from: duration_ms, type: int}
//	    error: {from: "return:1"}
type Spec struct {
	// Include lists other probe files whose probes this file adds to its
	// own, relative to this file's directory; LoadSpec reads them.
	Include []string `yaml:"include"`
	// Offsets names the offsets file (routerscope probes extract) to
	// resolve the probes with on binaries without DWARF, relative to this
	// file; empty means the file beside it (see OffsetsPath). LoadSpec
	// makes it relative to the working directory.
	Offsets string  `yaml:"offsets"`
	Probes  []Probe `yaml:"probes"`
	// Path is the file the spec was read from, for error messages; not YAML.
	Path string `yaml:"-"`
	// Files are every file LoadSpec read for the spec: Path, then the
	// files it includes; not YAML.
	Files []string `yaml:"-"`
}

// Probe declares one function to turn into a span.
type Probe struct {
	// Symbol is the fully qualified Go function name as it appears in the
	// binary's symbol table, e.g. "main.(*Server).handle".
	Symbol string `yaml:"symbol"`
	// Span is the name of the span the function produces.
	Span string `yaml:"span"`
	// Kind is the span kind: internal (default), server, client, producer, consumer.
	Kind string `yaml:"kind"`
	// Parent names the span (by span name) this span attaches to when several
	// are open on the goroutine; empty means the innermost open span.
	Parent string `yaml:"parent"`
	// Attributes are read when the function is entered or when it returns.
	Attributes []Attribute `yaml:"attributes"`
	// Error marks the span failed; nil means no error detection.
	Error *ErrorRule `yaml:"error"`
	// IntoParent makes the probe add its attributes to its parent span
	// (the innermost open span of Parent, or of any probe) instead of
	// producing a span: for values that exist only inside the parent's
	// function, such as the status code an HTTP handler writes.
	IntoParent bool `yaml:"into_parent"`
	// End says where the span ends: "return" (the default) at the
	// function's RETs, each a single-stepped uprobe hit; "next" where the
	// next span opens at the same call depth or above (its next sibling)
	// or an enclosing span ends, with no RET uprobe at all. End values of
	// an end: next probe come from end:arg:... sources.
	End string `yaml:"end"`
	// EndAt names a function (a symbol, like Symbol) whose entry, in the
	// same goroutine once this function has returned, ends the span: an
	// end: next span with one more place to end, for a root span whose
	// caller runs a known function right after it (net/http calls
	// (*response).finishRequest after the handler returns). The function
	// returned, so its end values come from end:arg:... sources through
	// pointers to memory that outlives its frame (the heap). Implies
	// end: next; an entry of EndAt at a deeper call depth (inside the
	// function) ends nothing.
	EndAt string `yaml:"end_at"`
}

// Attribute declares one span attribute and where its value comes from.
type Attribute struct {
	// Name is the attribute key, e.g. "category.name".
	Name string `yaml:"name"`
	// From is the value source:
	//   arg:NAME[.Field...] or arg:INDEX[.Field...]  an argument, read at entry
	//   receiver[.Field...]                        the method receiver, read at entry
	//   return:INDEX[.Field...]                    a result, read at return
	//   duration_ms | duration_us | duration_ns    the span's duration
	// Omit From and set Value for a constant.
	From string `yaml:"from"`
	// Value is a constant attribute value (used when From is empty).
	Value any `yaml:"value"`
	// Type is the attribute type: string, int, float, bool, string_list.
	// Empty means: derived from the source's Go type.
	Type string `yaml:"type"`
	// Map rewrites the value read (formatted as a string) to another string,
	// e.g. {"true": blocked, "false": allowed}.
	Map map[string]string `yaml:"map"`
	// OmitEmpty leaves the attribute off when the value read is empty: an
	// empty string or list, zero, or false (e.g. user.id "if available").
	OmitEmpty bool `yaml:"omit_empty"`
	// MaxBytes keeps at most this many bytes of a string value (and of
	// each element of a string list), 1 to MaxStringBytes; 0 keeps what the
	// kernel copied (MaxStringBytes, MaxElemBytes per element). Cuts fall
	// on UTF-8 character boundaries and mark the value truncated.
	MaxBytes int `yaml:"max_bytes"`
}

// ErrorRule decides when a span has failed.
type ErrorRule struct {
	// From is a return value or field (return:INDEX[.Field...]) of type error
	// (failed when non-nil), bool (failed when it equals Equals, default true)
	// or integer (failed when it equals Equals, or when >= AtLeast).
	From string `yaml:"from"`
	// Equals is the failing value for bool and integer sources.
	Equals any `yaml:"equals"`
	// AtLeast makes integer sources fail when the value is >= AtLeast.
	AtLeast *int64 `yaml:"at_least"`
	// Message is a string result or field (return:INDEX[.Field]) whose
	// non-empty value becomes the failed span's status message, for bool
	// and integer rules whose failure carries no text of its own.
	Message string `yaml:"message"`
}
