package spans

// The tests are in package spans_test because the fixtures they share with
// agent's tests (package spantest) import this package; these names give
// them the unexported pieces they check directly.
var (
	ValueAttr    = valueAttr
	ConstAttr    = constAttr
	DurationAttr = durationAttr
	SpanKindOf   = spanKind
	RepairUTF8   = repairUTF8
	BuildRecord  = buildRecord
)

const MaxMergedAttributes = maxMergedAttributes

// Waiting returns how many parent spans have into_parent attributes
// waiting for their record, counted under the lock (PendingMerges is the
// lock-free count).
func (a *Assembler) Waiting() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.merged)
}
