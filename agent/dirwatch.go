package agent

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// The config watcher (reload.go) used to stat its files every
// watch_interval, which wakes an idle agent every second. On Linux it
// waits instead for inotify to report a change in the directories that
// hold the files, and in those of every symlink on the way to them: a
// Kubernetes ConfigMap volume swaps a `..data` symlink in the mount's
// directory, and an editor renames a new file over the old one, both of
// which a watch on the file itself would miss. Only what inotify cannot
// see (a directory that does not exist yet, another host's write to a
// network file system) waits for the slow safety poll.

// Timing of the config watch with inotify working.
const (
	// watchSettle is the longest pause between an inotify event and the
	// check it triggers (the watch interval when shorter): the events of
	// one save (truncate, writes, close, rename) are taken together.
	watchSettle = 100 * time.Millisecond
	// watchSafetyPoll is how often the files are stat'ed anyway (the
	// watch interval when longer).
	watchSafetyPoll = time.Minute
	// maxSymlinkHops bounds the symlinks followed from one watched path,
	// as the kernel's own limit (40) is more than any config layout
	// needs and a loop must end.
	maxSymlinkHops = 8
)

// dirWatchMask are the directory events that may change a watched file:
// created, written, moved in or out, deleted, its attributes changed, or
// the directory itself moved or deleted.
const dirWatchMask = unix.IN_CREATE | unix.IN_CLOSE_WRITE | unix.IN_MODIFY | unix.IN_MOVED_TO | unix.IN_MOVED_FROM |
	unix.IN_DELETE | unix.IN_ATTRIB | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

// dirWatch is an inotify instance watching directories. Its file is read
// in the Go runtime's poller, so waiting costs no thread and no wake-up.
type dirWatch struct {
	f  *os.File
	fd int
	// wds maps each watched directory (its real path) to its watch.
	wds map[string]int
	// events gets a token when something happened in a watched
	// directory; the reader closes it when the inotify file is closed.
	events chan struct{}
}

// newDirWatch opens an inotify instance; the caller runs read and, when
// done, close.
func newDirWatch() (*dirWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &dirWatch{f: os.NewFile(uintptr(fd), "inotify"), fd: fd, wds: map[string]int{}, events: make(chan struct{}, 1)}, nil
}

// read turns inotify events into tokens on w.events until the file is
// closed. The events' contents are not needed: any of them leads to the
// same check of the files' stamps.
func (w *dirWatch) read() {
	defer close(w.events)
	buf := make([]byte, 4096)
	for {
		if _, err := w.f.Read(buf); err != nil {
			return
		}
		select {
		case w.events <- struct{}{}:
		default: // one is pending already
		}
	}
}

// sync watches the directories of files (see watchDirs) and stops
// watching the others. It tells whether every one of them is watched:
// when not, the caller polls.
func (w *dirWatch) sync(files []string) bool {
	want := map[string]bool{}
	complete := true
	for _, f := range files {
		dirs, ok := watchDirs(f)
		complete = complete && ok
		for _, d := range dirs {
			want[d] = true
		}
	}
	for d := range want {
		// Adding a watch again is cheap and returns the same descriptor;
		// a directory deleted and made again gets a new one.
		wd, err := unix.InotifyAddWatch(w.fd, d, dirWatchMask)
		if err != nil {
			complete = false
			delete(w.wds, d)
			continue
		}
		w.wds[d] = wd
	}
	for d, wd := range w.wds {
		if !want[d] {
			_, _ = unix.InotifyRmWatch(w.fd, uint32(wd))
			delete(w.wds, d)
		}
	}
	return complete
}

// close closes the inotify file, which ends read.
func (w *dirWatch) close() { _ = w.f.Close() }

// watchDirs returns the real paths of the directories whose events may
// change path: the one that holds it and the one that holds each symlink
// on the way to its target. ok is false when one could not be resolved
// (a missing directory), which only polling then watches.
func watchDirs(path string) (dirs []string, ok bool) {
	ok = true
	p := path
	for range maxSymlinkHops {
		dir, err := filepath.EvalSymlinks(filepath.Dir(p))
		if err != nil {
			return dirs, false
		}
		dirs = append(dirs, dir)
		p = filepath.Join(dir, filepath.Base(p))
		target, err := os.Readlink(p)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, os.ErrNotExist) {
			// Not a symlink (or not there yet: its directory's events
			// announce it).
			return dirs, ok
		}
		if err != nil {
			return dirs, false
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(dir, target)
		}
		p = target
	}
	return dirs, false
}
