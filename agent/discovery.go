package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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
	// Interval is how often /proc is scanned.
	Interval time.Duration
	// RetryInterval is how long a process whose attach failed (or whose
	// capture ended while it kept running) waits before the next attempt.
	RetryInterval time.Duration
	// MaxProcesses bounds the processes traced at once (each has its own
	// export pipeline and kernel attachments).
	MaxProcesses int
}

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

// validate checks the discovery settings and compiles the selectors.
func (d *Discovery) validate() error {
	const p = "routerscope.discovery"
	if d.Interval <= 0 || d.RetryInterval <= 0 {
		return fmt.Errorf("%w: %s.interval and retry_interval must be positive durations, e.g. \"500ms\"", ErrConfig, p)
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

// targetRules turns routerscope.targets into rules, so targets and
// discovery rules are matched the same way.
func targetRules(targets []Target) []Rule {
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

// matcher matches processes of one proc root against compiled rules,
// caching what is costly to learn per scan.
type matcher struct {
	procRoot string
	// sameFile caches the os.Stat of target binaries for one scan.
	sameFile map[string]os.FileInfo
	// tables caches listening sockets by network namespace for one scan.
	tables map[string]map[string]int
}

// matches tells whether p is selected by s. Listening ports are read only
// when every cheaper selector already matched.
func (m *matcher) matches(s *Selector, p Process) bool {
	if s.PID != 0 && s.PID != p.PID {
		return false
	}
	if s.Comm != "" {
		if ok, _ := filepath.Match(s.Comm, p.Comm); !ok {
			return false
		}
	}
	if s.Executable != "" {
		exe := strings.TrimSuffix(p.Exe, deletedSuffix)
		if ok, _ := filepath.Match(s.Executable, exe); !ok {
			return false
		}
	}
	if s.cmdline != nil && !s.cmdline.MatchString(strings.Join(p.Cmdline, " ")) {
		return false
	}
	if s.sameFile != "" && !m.isSameFile(s.sameFile, p) {
		return false
	}
	if s.Port != 0 {
		ports, err := listeningPorts(m.procRoot, p.PID, m.tables)
		if err != nil || !ports[s.Port] {
			return false
		}
	}
	return true
}

func (m *matcher) isSameFile(path string, p Process) bool {
	want, ok := m.sameFile[path]
	if !ok {
		want, _ = os.Stat(path)
		m.sameFile[path] = want
	}
	if want == nil {
		return false
	}
	got, err := os.Stat(filepath.Join(m.procRoot, fmt.Sprint(p.PID), "exe"))
	return err == nil && os.SameFile(got, want)
}

// match is one process selected by a rule.
type match struct {
	proc Process
	rule string
	// probes are the rule's probe files, or the global ones.
	probes []string
	// target is the routerscope.targets entry, when one selected it.
	target Target
}

// procCache remembers, from one scan to the next, what was read of each
// process, so a scan reads only the start time and the executable link of
// a process it has seen. The link is read every time because exec keeps
// the PID and the start time: a process seen between fork and exec shows
// its parent's executable. The name and command line are taken as they
// were when the executable was first seen (a process that renames itself
// later is matched by its old name).
type procCache map[procKey]*cachedProc

type cachedProc struct {
	proc Process
	seen bool
}

// scanProcesses lists the processes under procRoot selected by the rules
// and not excluded, keyed by process identity. self is the agent's own
// PID, always excluded. cache (which may be nil) is updated in place.
func scanProcesses(procRoot string, rules []Rule, exclude []Selector, globalProbes []string, self int, cache procCache) (map[procKey]match, error) {
	pids, err := listPIDs(procRoot)
	if err != nil {
		return nil, err
	}
	m := &matcher{procRoot: procRoot, sameFile: map[string]os.FileInfo{}, tables: map[string]map[string]int{}}
	found := map[procKey]match{}
	for _, c := range cache {
		c.seen = false
	}
	for _, pid := range pids {
		if pid == self {
			continue
		}
		start, err := readStartTime(procRoot, pid)
		if err != nil {
			continue // gone meanwhile
		}
		exe, err := os.Readlink(filepath.Join(procRoot, strconv.Itoa(pid), "exe"))
		if err != nil {
			continue // a kernel thread, or not ours to read
		}
		key := procKey{pid: pid, start: start}
		c := cache[key]
		if c == nil || c.proc.Exe != exe {
			p, err := readProcessRest(procRoot, pid, start)
			if err != nil {
				continue
			}
			c = &cachedProc{proc: p}
			if cache != nil {
				cache[key] = c
			}
		}
		c.seen = true
		if mt, ok := m.match(c.proc, rules, exclude, globalProbes); ok {
			found[key] = mt
		}
	}
	for k, c := range cache {
		if !c.seen {
			delete(cache, k)
		}
	}
	return found, nil
}

// match applies the rules in order, then the exclusions.
func (m *matcher) match(p Process, rules []Rule, exclude []Selector, globalProbes []string) (match, bool) {
	for i := range rules {
		r := &rules[i]
		if !m.matches(&r.Selector, p) {
			continue
		}
		for j := range exclude {
			if m.matches(&exclude[j], p) {
				return match{}, false
			}
		}
		probes := r.Probes
		if len(probes) == 0 {
			probes = globalProbes
		}
		return match{proc: p, rule: r.Name, probes: probes}, true
	}
	return match{}, false
}
