package agent

import (
	"os"
	"strings"

	"go.uber.org/zap"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/probes"
)

// Log keys of the propagation log line.
const (
	LogKeyExtract   = "traceparent_extract"
	LogKeyInject    = "traceparent_inject"
	LogKeyLockdown  = "kernel_lockdown"
	LogKeyCgroup    = "cgroup"
	LogKeyExtractNo = "extract_off_reason"
	LogKeyInjectNo  = "inject_off_reason"
)

// InjectModeSockMsg is the only injection mode: an sk_msg program inserts
// the header into the socket data, which works under kernel lockdown
// (bpf_probe_write_user does not) and leaves the target's memory alone.
const InjectModeSockMsg = "sk_msg"

// propagationReporter is an EventSource that knows its W3C trace context
// state (*probes.Tracer).
type propagationReporter interface {
	Propagation() probes.PropagationStatus
}

// LockdownMode reads the kernel lockdown mode ("none", "integrity",
// "confidentiality"), the bracketed word of /sys/kernel/security/lockdown;
// "unknown" when securityfs does not say.
func LockdownMode() string {
	data, err := os.ReadFile("/sys/kernel/security/lockdown")
	if err != nil {
		return "unknown"
	}
	return lockdownMode(string(data))
}

func lockdownMode(s string) string {
	for _, w := range strings.Fields(s) {
		if len(w) > 2 && w[0] == '[' && w[len(w)-1] == ']' {
			return w[1 : len(w)-1]
		}
	}
	return "unknown"
}

// logPropagation says which trace context halves are active on an
// attachment, how headers are injected and what the kernel lockdown mode
// is: with lockdown on, user-memory writes are refused, which is why the
// injection goes through sk_msg.
func logPropagation(log *zap.Logger, target config.Target, src EventSource) {
	r, ok := src.(propagationReporter)
	if !ok {
		return
	}
	st := r.Propagation()
	inject := "off"
	if st.Inject {
		inject = InjectModeSockMsg
	}
	fields := []zap.Field{zap.Stringer(LogKeyTarget, target), zap.Bool(LogKeyExtract, st.Extract),
		zap.String(LogKeyInject, inject), zap.String(LogKeyLockdown, LockdownMode())}
	if st.Cgroup != "" {
		fields = append(fields, zap.String(LogKeyCgroup, st.Cgroup))
	}
	if st.ExtractOff != "" {
		fields = append(fields, zap.String(LogKeyExtractNo, st.ExtractOff))
	}
	if st.InjectOff != "" {
		fields = append(fields, zap.String(LogKeyInjectNo, st.InjectOff))
	}
	log.Info("trace context propagation", fields...)
}

// LogKeyHandOffNo is the reason field of the hand-off-off log line.
const LogKeyHandOffNo = "handoff_off_reason"

// statsReporter is an EventSource with the capture engine's counters
// (*probes.Tracer).
type statsReporter interface {
	Stats() probes.Stats
}

// logHandOff says, in one line, that goroutine hand-off was asked for and
// is off on an attachment, and why (the target's Go release or layout is
// not one runtime.newproc1's probe is verified on): spans of goroutines
// started inside a span then start their own traces.
func logHandOff(log *zap.Logger, target config.Target, src EventSource) {
	r, ok := src.(statsReporter)
	if !ok {
		return
	}
	if why := r.Stats().HandOffOff; why != "" {
		log.Warn("goroutine hand-off off", zap.Stringer(LogKeyTarget, target), zap.String(LogKeyHandOffNo, why))
	}
}
