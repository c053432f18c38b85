package discovery

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/routerscope/routerscope/agent/config"
)

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
func (m *matcher) matches(s *config.Selector, p Process) bool {
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
	if s.CmdlinePattern() != nil && !s.CmdlinePattern().MatchString(strings.Join(p.Cmdline, " ")) {
		return false
	}
	if s.SameFile() != "" && !m.isSameFile(s.SameFile(), p) {
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

// Match is one process selected by a rule.
type Match struct {
	Proc Process
	// Rule names the rule (or target) that selected the process.
	Rule string
	// Probes are the rule's probe files, or the global ones.
	Probes []string
	// Target is the routerscope.targets entry, when one selected it.
	Target config.Target
}

// Cache remembers, from one scan to the next, what was read of each
// process, so a scan reads only the start time and the executable link of
// a process it has seen. The link is read every time because exec keeps
// the PID and the start time: a process seen between fork and exec shows
// its parent's executable. The name and command line are taken as they
// were when the executable was first seen (a process that renames itself
// later is matched by its old name).
type Cache map[Key]*cachedProc

type cachedProc struct {
	proc Process
	seen bool
}

// Scan lists the processes under procRoot selected by the rules
// and not excluded, keyed by process identity. self is the agent's own
// PID, always excluded. cache (which may be nil) is updated in place.
func Scan(procRoot string, rules []config.Rule, exclude []config.Selector, globalProbes []string, self int, cache Cache) (map[Key]Match, error) {
	pids, err := listPIDs(procRoot)
	if err != nil {
		return nil, err
	}
	for _, c := range cache {
		c.seen = false
	}
	found, _ := scanPIDs(procRoot, pids, rules, exclude, globalProbes, self, cache)
	for k, c := range cache {
		if !c.seen {
			delete(cache, k)
		}
	}
	return found, nil
}

// ScanPIDs is Scan of the listed processes only (those that just executed
// a program): a few reads per process instead of a walk of /proc. The
// cache is updated but, unlike Scan, forgets nothing. Waiting lists the
// processes still running that no rule selects yet but one would if they
// listened on its port: only those can match later without executing
// another program.
func ScanPIDs(procRoot string, pids []int, rules []config.Rule, exclude []config.Selector, globalProbes []string, self int, cache Cache) (found map[Key]Match, waiting []int) {
	return scanPIDs(procRoot, pids, rules, exclude, globalProbes, self, cache)
}

func scanPIDs(procRoot string, pids []int, rules []config.Rule, exclude []config.Selector, globalProbes []string, self int, cache Cache) (map[Key]Match, []int) {
	m := &matcher{procRoot: procRoot, sameFile: map[string]os.FileInfo{}, tables: map[string]map[string]int{}}
	found := map[Key]Match{}
	var waiting []int
	for _, pid := range pids {
		if pid == self {
			continue
		}
		start, err := ReadStartTime(procRoot, pid)
		if err != nil {
			continue // gone meanwhile
		}
		exe, err := os.Readlink(filepath.Join(procRoot, strconv.Itoa(pid), "exe"))
		if err != nil {
			continue // a kernel thread, or not ours to read
		}
		key := Key{PID: pid, Start: start}
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
		} else if m.mayListenIntoMatch(c.proc, rules) {
			waiting = append(waiting, pid)
		}
	}
	return found, waiting
}

// mayListenIntoMatch tells whether a rule with a port selects p in all
// but the port.
func (m *matcher) mayListenIntoMatch(p Process, rules []config.Rule) bool {
	for i := range rules {
		s := rules[i].Selector
		if s.Port == 0 {
			continue
		}
		s.Port = 0
		if m.matches(&s, p) {
			return true
		}
	}
	return false
}

// match applies the rules in order, then the exclusions.
func (m *matcher) match(p Process, rules []config.Rule, exclude []config.Selector, globalProbes []string) (Match, bool) {
	for i := range rules {
		r := &rules[i]
		if !m.matches(&r.Selector, p) {
			continue
		}
		for j := range exclude {
			if m.matches(&exclude[j], p) {
				return Match{}, false
			}
		}
		probes := r.Probes
		if len(probes) == 0 {
			probes = globalProbes
		}
		return Match{Proc: p, Rule: r.Name, Probes: probes}, true
	}
	return Match{}, false
}
