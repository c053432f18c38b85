package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"time"
)

// Discovery is routerscope.discovery: which processes on the machine to
// trace, found by scanning /proc, and which probe files each gets.
type Discovery struct {
	// Rules are tried in order; a process gets the probes of the first
	// rule it matches.
	Rules []Rule
	// Exclude lists processes never traced even when a rule matches; the
	// agent itself is always excluded.
	Exclude []Selector
	// Interval is how often /proc is walked when the agent polls; with
	// exec notifications, the period of the re-checks and walks while
	// something is pending (see agent/doc.go).
	Interval time.Duration
	// Settle is how long a process that executed is re-checked every
	// Interval (when a port rule selects it in all but the port), and how
	// long /proc is walked every Interval after the start or a reload:
	// long enough for a new process to open its port. The agent makes it
	// at least two intervals (see agent/execwake.go).
	Settle time.Duration
	// Rescan is the safety scan's period when exec notifications drive
	// discovery: it finds what no exec announced (a process that started
	// listening after the settle window, or one forked without an exec).
	Rescan time.Duration
	// RetryInterval is how long a process whose attach failed (or whose
	// capture ended while it kept running) waits before the next attempt.
	RetryInterval time.Duration
	// MaxProcesses bounds the processes traced at once (each has its own
	// export pipeline and kernel attachments).
	MaxProcesses int
}

// Defaults of Discovery.Settle and Discovery.Rescan: a new process gets
// 5 s of scans every interval to open its port, and a /proc scan (~1.2 ms)
// every 30 s finds what no exec announced.
const (
	DefaultSettle = 5 * time.Second
	DefaultRescan = 30 * time.Second
)

// Selector picks processes. Every field that is set must match (they are
// ANDed); at least one must be set.
type Selector struct {
	// Executable is a glob (path.Match syntax: * stays within one path
	// element) on the executable's path as the process sees it, in its own
	// mount namespace (/proc/PID/exe).
	Executable string
	// Comm is a glob on the process name (/proc/PID/comm, 15 bytes at most).
	Comm string
	// Cmdline is a regular expression searched in the command line, its
	// arguments joined by single spaces.
	Cmdline string
	// Port matches a process listening on this TCP port.
	Port int
	// PID matches one process id.
	PID int

	// sameFile matches processes running this file (same device and inode);
	// set only for routerscope.targets binary entries.
	sameFile string
	cmdline  *regexp.Regexp
}

// Rule is one discovery rule: a selector and the probe files it applies.
type Rule struct {
	// Name labels the rule in logs and metrics.
	Name string
	Selector
	// Probes are probe spec files; empty means routerscope.probes.
	Probes []string
}

// CmdlinePattern is the compiled Cmdline: nil when it is unset or the
// selector has not been validated yet.
func (s *Selector) CmdlinePattern() *regexp.Regexp { return s.cmdline }

// SameFile is the binary a routerscope.targets entry selects the
// processes of (same device and inode); empty for discovery rules.
func (s *Selector) SameFile() string { return s.sameFile }

func (s Selector) empty() bool {
	return s.Executable == "" && s.Comm == "" && s.Cmdline == "" && s.Port == 0 && s.PID == 0 && s.sameFile == ""
}

// compile checks the selector and prepares its regular expression; path
// names it in errors.
func (s *Selector) compile(path string) error {
	if s.empty() {
		return fmt.Errorf("%w: %s: set at least one of executable, comm, cmdline, port, pid", ErrConfig, path)
	}
	for key, glob := range map[string]string{"executable": s.Executable, "comm": s.Comm} {
		if _, err := filepath.Match(glob, ""); err != nil {
			return fmt.Errorf("%w: %s.%s: %q is not a valid glob (use *, ? and [...]): %v", ErrConfig, path, key, glob, err)
		}
	}
	if s.Cmdline != "" {
		re, err := regexp.Compile(s.Cmdline)
		if err != nil {
			return fmt.Errorf("%w: %s.cmdline: %q is not a valid regular expression: %v", ErrConfig, path, s.Cmdline, err)
		}
		s.cmdline = re
	}
	if s.Port < 0 || s.Port > 65535 {
		return fmt.Errorf("%w: %s.port: %d is not a TCP port (1..65535)", ErrConfig, path, s.Port)
	}
	if s.PID < 0 {
		return fmt.Errorf("%w: %s.pid: %d is not a process id", ErrConfig, path, s.PID)
	}
	return nil
}

// validate checks the discovery settings, names unnamed rules and
// compiles the selectors.
func (d *Discovery) validate() error {
	const p = "routerscope.discovery"
	// Unset (a Discovery built in Go before they existed), the exec
	// schedule's durations take their defaults.
	if d.Settle == 0 {
		d.Settle = DefaultSettle
	}
	if d.Rescan == 0 {
		d.Rescan = DefaultRescan
	}
	if d.Interval <= 0 || d.RetryInterval <= 0 || d.Settle <= 0 || d.Rescan <= 0 {
		return fmt.Errorf("%w: %s.interval, settle, rescan_interval and retry_interval must be positive durations, e.g. \"500ms\"", ErrConfig, p)
	}
	if d.MaxProcesses <= 0 {
		return fmt.Errorf("%w: %s.max_processes: must be positive (got %d)", ErrConfig, p, d.MaxProcesses)
	}
	names := map[string]bool{}
	for i := range d.Rules {
		r := &d.Rules[i]
		path := fmt.Sprintf("%s.rules[%d]", p, i)
		if r.Name == "" {
			r.Name = fmt.Sprintf("rule%d", i)
		}
		if names[r.Name] {
			return fmt.Errorf("%w: %s.name: %q is used by two rules; names label metrics, make them unique", ErrConfig, path, r.Name)
		}
		names[r.Name] = true
		if err := r.compile(path); err != nil {
			return err
		}
	}
	for i := range d.Exclude {
		if err := d.Exclude[i].compile(fmt.Sprintf("%s.exclude[%d]", p, i)); err != nil {
			return err
		}
	}
	return nil
}

// TargetRules turns routerscope.targets into rules, so targets and
// discovery rules are matched the same way.
func TargetRules(targets []Target) []Rule {
	rules := make([]Rule, 0, len(targets))
	for _, t := range targets {
		r := Rule{Name: t.String()}
		if t.PID != 0 {
			r.PID = t.PID
		} else {
			r.sameFile = t.Binary
		}
		rules = append(rules, r)
	}
	return rules
}
