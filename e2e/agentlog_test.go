package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/routerscope/routerscope/internal/testenv"
)

// logEntry is one line of the agent's JSON log.
type logEntry map[string]any

// zapTimeLayout is the agent's log timestamp (zap's ISO8601 encoder,
// millisecond precision).
const zapTimeLayout = "2006-01-02T15:04:05.000Z0700"

// logEntries returns the agent's JSON log lines whose msg is msg.
func logEntries(p *proc, msg string) []logEntry {
	var out []logEntry
	sc := bufio.NewScanner(strings.NewReader(p.Output()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e logEntry
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue // not a log line (the agent's stdout carries nothing here)
		}
		if e["msg"] == msg {
			out = append(out, e)
		}
	}
	return out
}

func (e logEntry) str(key string) string {
	s, _ := e[key].(string)
	return s
}

// time is the entry's timestamp.
func (e logEntry) time(t *testing.T) time.Time {
	t.Helper()
	ts, err := time.Parse(zapTimeLayout, e.str("ts"))
	if err != nil {
		t.Fatalf("log line %v: timestamp: %v", e, err)
	}
	return ts
}

var targetPIDRE = regexp.MustCompile(`^pid (\d+)`)

// pid is the process an "attached" or "detached" line is about: the pid
// field, or the one in the target ("pid 42 (/path)").
func (e logEntry) pid() int {
	if v, ok := e["pid"].(float64); ok {
		return int(v)
	}
	if m := targetPIDRE.FindStringSubmatch(e.str("target")); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

// waitLog waits until a line with msg about pid is logged and returns it.
func waitLog(t *testing.T, p *proc, msg string, pid int, timeout time.Duration) logEntry {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, e := range logEntries(p, msg) {
			if e.pid() == pid {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent logged no %q for pid %d within %s:\n%s", msg, pid, timeout, tail(p.Output(), 40))
		}
		select {
		case <-p.done:
			t.Fatalf("agent exited while waiting for %q for pid %d:\n%s", msg, pid, tail(p.Output(), 40))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// httpStatus returns the status of a GET, or 0 when the request failed.
func httpStatus(url string) int {
	resp, err := client.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// series lists a family's series as "k=v,k=v value" strings, for
// messages and for asserting that no unexpected label value appeared.
func series(fams map[string]*dto.MetricFamily, name string) map[string]float64 {
	out := map[string]float64{}
	f := fams[name]
	if f == nil {
		return out
	}
	for _, m := range f.Metric {
		var ls []string
		for _, l := range m.Label {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
		out[strings.Join(ls, ",")] = v
	}
	return out
}

// metricCheck is one expected series value.
type metricCheck struct {
	name   string
	labels []string
	want   float64
}

// waitMetrics scrapes until every check holds (counters of export calls
// move just after the receiver has the spans) and fails with the
// mismatches otherwise.
func waitMetrics(t *testing.T, addr string, timeout time.Duration, checks ...metricCheck) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		fams := testenv.Scrape(t, addr)
		var bad []string
		for _, c := range checks {
			got, ok := testenv.Metric(fams, c.name, c.labels...)
			if !ok || got != c.want {
				bad = append(bad, c.name+"{"+strings.Join(c.labels, ",")+"} = "+
					strconv.FormatFloat(got, 'g', -1, 64)+" (present "+strconv.FormatBool(ok)+"), want "+
					strconv.FormatFloat(c.want, 'g', -1, 64))
			}
		}
		if len(bad) == 0 {
			return fams
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics after %s:\n  %s", timeout, strings.Join(bad, "\n  "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
