package agent

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/agent/discovery"
	"github.com/routerscope/routerscope/internal/readlimit"
	"github.com/routerscope/routerscope/probes"
)

// LogKeyTrigger names what started a reload.
const LogKeyTrigger = "trigger"

// Reload results, for the reloads metric.
const (
	reloadApplied = "applied"
	reloadRefused = "refused"
)

// startWatch watches the config file and the probe files and signals
// reloads when their content changed. It waits for inotify to report a
// change in their directories (dirwatch.go), or where that cannot watch
// them polls every WatchInterval. Each check only stats the files
// (following symlinks); they are read and hashed only when a stamp moved
// (see fileStamps). The returned function stops the watcher and waits
// for it.
func (m *manager) startWatch(ctx context.Context, reloads chan<- struct{}) func() {
	if m.o.reload == nil || m.cfg.Agent.WatchInterval <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	interval := m.cfg.Agent.WatchInterval
	// The file list changes with reloads, which the run loop applies: the
	// watcher reads it through this mutex-guarded copy.
	var mu sync.Mutex
	list := watchedFiles(m.cfg)
	relisted := make(chan struct{}, 1)
	// The directories are watched before the baseline is taken (rearm
	// below), so a change made between the two is not missed.
	dw, err := newDirWatch()
	var events <-chan struct{}
	if err == nil {
		events = dw.events
		wg.Go(dw.read)
	}
	// rearm watches the current list's directories and returns how long
	// until the next check without an event.
	rearm := func() time.Duration {
		if dw != nil && dw.sync(list) {
			return max(interval, m.o.watchSafetyPoll)
		}
		return interval
	}
	first := rearm()
	stamps := fileStamps(list)
	last := hashFiles(list)
	m.onReload = func(cfg config.Config) {
		mu.Lock()
		defer mu.Unlock()
		// The new list is the baseline from now on: a file added to it is
		// not a change (the reload just read it).
		list = watchedFiles(cfg)
		rearm()
		stamps = fileStamps(list)
		last = hashFiles(list)
		select {
		case relisted <- struct{}{}: // the watcher sets its poll timer
		default:
		}
	}
	relist := func() time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return rearm()
	}
	check := func() bool {
		mu.Lock()
		defer mu.Unlock()
		st := fileStamps(list)
		if st == stamps {
			return false
		}
		stamps = st
		cur := hashFiles(list)
		changed := cur != last
		last = cur
		return changed
	}
	wg.Go(func() {
		if dw != nil {
			defer dw.close()
		}
		poll := time.NewTimer(first)
		defer poll.Stop()
		settle := time.NewTimer(time.Hour)
		settle.Stop()
		settling := false
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-events:
				if !ok {
					events = nil // the inotify file failed: poll
					poll.Reset(interval)
					continue
				}
				if !settling {
					settling = true
					settle.Reset(min(interval, watchSettle))
				}
				continue
			case <-relisted:
				poll.Reset(relist())
				continue
			case <-settle.C:
				settling = false
			case <-poll.C:
			}
			changed := check()
			poll.Reset(relist())
			if !changed {
				continue
			}
			select {
			case reloads <- struct{}{}:
			default: // one is pending already
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// watchedFiles are the config file and every probe file it names.
func watchedFiles(cfg config.Config) []string {
	var files []string
	if cfg.Path != "" {
		files = append(files, cfg.Path)
	}
	var probeFiles []string
	probeFiles = append(probeFiles, cfg.Agent.Probes...)
	for _, r := range cfg.Agent.Discovery.Rules {
		probeFiles = append(probeFiles, r.Probes...)
	}
	for _, p := range probeFiles {
		// Included files and offsets files change the probes too.
		files = append(files, probes.SpecFiles(p)...)
	}
	sort.Strings(files)
	return slices.Compact(files)
}

// maxWatchedBytes bounds each watched file's read: the config's and the
// probe files' own bounds.
const maxWatchedBytes = max(config.MaxConfigBytes, probes.MaxSpecBytes)

// hashFiles digests the files' names and contents; a missing file hashes
// as absent, so its return is a change too.
func hashFiles(files []string) [32]byte {
	h := sha256.New()
	for _, f := range files {
		h.Write([]byte(f))
		data, err := readlimit.File(f, maxWatchedBytes)
		if err != nil {
			// Missing, unreadable or too large: each hashes as itself, so
			// a change between them is a change (the reload then says
			// what is wrong).
			h.Write([]byte{0})
			h.Write([]byte(err.Error()))
			continue
		}
		h.Write([]byte{1})
		h.Write(data)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// fileStamps digests what stat says of each file (following symlinks):
// device, inode, size, modification and change times, or the error. A
// write changes the times (and the change time cannot be set back by the
// writer), a replaced file or a swapped ConfigMap symlink the inode: when
// the stamps are equal the contents are taken as unchanged, without
// reading them.
func fileStamps(files []string) [32]byte {
	h := sha256.New()
	var buf []byte
	for _, f := range files {
		buf = append(buf[:0], f...)
		buf = append(buf, 0)
		var st unix.Stat_t
		if err := unix.Stat(f, &st); err != nil {
			buf = append(buf, err.Error()...)
		} else {
			for _, v := range []uint64{st.Dev, st.Ino, uint64(st.Size), uint64(st.Mode),
				uint64(st.Mtim.Sec), uint64(st.Mtim.Nsec), uint64(st.Ctim.Sec), uint64(st.Ctim.Nsec)} {
				buf = binary.LittleEndian.AppendUint64(buf, v)
			}
		}
		h.Write(buf)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// reloadConfig loads the config again and applies what can change while
// running: targets, discovery rules, probe files and sampling. The
// exporter, resource, export settings, span age, metrics address and
// logging stay as they were (they belong to the pipeline that carries the
// spans in flight) and a warning says they need a restart. A config that
// does not load or validate, or names a probe file that cannot be read or
// checked, is refused as a whole: the running one stays.
func (m *manager) reloadConfig(ctx context.Context, trigger string) {
	if m.o.reload == nil {
		m.log.Warn("config reload requested, but the config came from flags only: nothing to reload", zap.String(LogKeyTrigger, trigger))
		return
	}
	next, err := m.o.reload()
	if err == nil {
		err = CheckTargets(next)
	}
	var digests map[string]string
	if err == nil {
		digests, err = probeDigests(next, m.o.probeCheck)
	}
	if err == nil {
		err = m.checkResolves(next, digests)
	}
	if err != nil {
		m.met.reloads.WithLabelValues(reloadRefused).Inc()
		m.log.Error("config reload refused: the running config stays in effect; fix the file and save it again (or send SIGHUP)",
			zap.String(LogKeyTrigger, trigger), zap.String(LogKeyConfig, m.cfg.Path), ErrorField(err))
		return
	}
	kept := keepPipelineSettings(m.cfg, &next)
	if len(kept) > 0 {
		m.log.Warn("config reload: these settings need a restart and keep their running values", zap.Strings("keys", kept))
	}
	ratio, attachAny, why := config.SampleRatio(next.Tracing)
	m.cfg, m.digests, m.ratio, m.paused = next, digests, ratio, !attachAny
	m.pipe.SetMaxProcesses(next.Agent.Discovery.MaxProcesses)
	if m.onReload != nil {
		m.onReload(next)
	}
	m.met.reloads.WithLabelValues(reloadApplied).Inc()
	m.log.Info("config reloaded", zap.String(LogKeyTrigger, trigger), zap.String(LogKeyConfig, next.Path),
		zap.Int("rules", len(next.Agent.Discovery.Rules)), zap.Int("targets", len(next.Agent.Targets)))
	if !attachAny {
		m.log.Info("attaching nothing", zap.String(LogKeyReason, why))
		m.detachAll(reasonChanged)
		m.matched = 0
		return
	}
	want, err := m.desired()
	if err != nil {
		m.log.Warn("config reloaded, but its targets are not running", zap.Error(err))
		want = map[discovery.Key]discovery.Match{}
	}
	_ = m.reconcile(ctx, want, false)
}

// checkResolves resolves the probes next would attach to each process
// attached now whose probes it changes, before anything is applied: a
// probe file that parses but names a function a running binary lacks
// would otherwise detach a working attachment that then never comes back.
// Processes not attached yet are not checked: their attach fails, is
// logged and retried as at any scan.
func (m *manager) checkResolves(next config.Config, digests map[string]string) error {
	if m.o.resolveCheck == nil || len(m.atts) == 0 {
		return nil
	}
	ratio, attachAny, _ := config.SampleRatio(next.Tracing)
	if !attachAny {
		return nil // detaches everything; nothing to resolve
	}
	// desired and spec read the manager's config: look at next through
	// them, then put the running one back.
	cfg, dg, r := m.cfg, m.digests, m.ratio
	m.cfg, m.digests, m.ratio = next, digests, ratio
	want, err := m.desired()
	specs := map[discovery.Key]string{}
	for key, w := range want {
		specs[key] = m.spec(w)
	}
	m.cfg, m.digests, m.ratio = cfg, dg, r
	if err != nil {
		return nil // the targets are gone: reconcile handles that
	}
	var errs []error
	checked := map[string]bool{}
	for key, a := range m.atts {
		w, ok := want[key]
		if !ok || specs[key] == a.spec {
			continue
		}
		req := AttachRequest{Target: config.Target{PID: key.PID, Binary: w.Target.Binary}, Probes: w.Probes, Rule: w.Rule}
		if w.Proc.Exe != "" {
			req.Executable = w.Proc.HostExecutable()
		}
		// Replicas of one binary resolve alike: check each binary once.
		id := req.Executable + "|" + strings.Join(req.Probes, ",")
		if req.Executable == "" {
			id = fmt.Sprint(key.PID) + "|" + strings.Join(req.Probes, ",")
		}
		if checked[id] {
			continue
		}
		checked[id] = true
		if err := m.o.resolveCheck(req); err != nil {
			errs = append(errs, fmt.Errorf("probes do not resolve against attached %s: %w", req.Target, err))
		}
	}
	return errors.Join(errs...)
}

// keepPipelineSettings copies into next the settings that only take effect
// at start, returning the keys whose value the reload wanted to change.
func keepPipelineSettings(cur config.Config, next *config.Config) []string {
	var kept []string
	keep := func(key string, changed bool) {
		if changed {
			kept = append(kept, key)
		}
	}
	t, nt := cur.Tracing, &next.Tracing
	keep("observability.tracing.exporter", !reflect.DeepEqual(t.Exporter, nt.Exporter))
	keep("observability.tracing.resource", !reflect.DeepEqual(t.Resource, nt.Resource))
	keep("observability.tracing.provider", t.Provider != nt.Provider)
	nt.Exporter, nt.Resource, nt.Provider = t.Exporter, t.Resource, t.Provider
	a, na := cur.Agent, &next.Agent
	keep("routerscope.export", a.Export != na.Export)
	keep("routerscope.max_span_age", a.MaxSpanAge != na.MaxSpanAge)
	keep("routerscope.metrics", a.Metrics != na.Metrics)
	keep("routerscope.log_level", a.LogLevel != na.LogLevel)
	keep("routerscope.log_format", a.LogFormat != na.LogFormat)
	keep("routerscope.watch_interval", a.WatchInterval != na.WatchInterval)
	keep("routerscope.propagation", a.Propagation != na.Propagation)
	// The capture object is loaded once with these sizes.
	keep("routerscope.kernel", !reflect.DeepEqual(a.Kernel, na.Kernel))
	na.Export, na.MaxSpanAge, na.Metrics, na.LogLevel, na.LogFormat, na.WatchInterval, na.Propagation, na.Kernel =
		a.Export, a.MaxSpanAge, a.Metrics, a.LogLevel, a.LogFormat, a.WatchInterval, a.Propagation, a.Kernel
	return kept
}
