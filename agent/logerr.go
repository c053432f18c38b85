package agent

import (
	"strings"

	"go.uber.org/zap"
)

// ErrorField logs err under "error": as a string when it is one line, as
// a list of its lines when several problems were joined (errors.Join
// separates them with newlines, which a JSON log shows as a literal \n
// inside one string).
func ErrorField(err error) zap.Field {
	if err == nil {
		return zap.Skip()
	}
	msg := err.Error()
	if !strings.Contains(msg, "\n") {
		return zap.Error(err)
	}
	return zap.Strings("error", strings.Split(msg, "\n"))
}
