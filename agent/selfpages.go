package agent

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxSmapsBytes bounds how much of /proc/self/smaps is read: a Go agent
// has a few hundred mappings of ~1.5 KiB each.
const maxSmapsBytes = 4 << 20

// dropExecutablePages unmaps the resident pages of the agent's own
// executable that are only read (code, read-only data) from its page
// tables, and returns the bytes dropped. Attaching runs a large part of
// the agent's code once (DWARF, ELF and BTF parsing, the kernel objects'
// loading), and the kernel maps up to 64 KiB of the cached file around
// each fault: afterwards nearly all of the 19 MiB executable counted as
// resident, most of it never run again. The pages stay in the page cache
// (they are the file's, shared and clean), so the ones still needed come
// back with a minor fault. Only mappings whose every page is still the
// file's are dropped (see cleanFileMappings): writable mappings, and
// read-only ones holding copied pages (a position-independent build's
// relocated read-only data), would lose their contents.
func dropExecutablePages() int {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0
	}
	defer f.Close()
	dropped := 0
	for _, r := range cleanFileMappings(io.LimitReader(f, maxSmapsBytes), exe) {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(r.lo), uintptr(r.hi-r.lo), unix.MADV_DONTNEED); errno == 0 {
			dropped += int(r.hi - r.lo)
		}
	}
	return dropped
}

// addrRange is one mapping's [lo, hi) addresses.
type addrRange struct{ lo, hi uint64 }

// cleanFileMappings returns the mappings of path, read from smaps text,
// that are read-only or read-execute, private, and hold no page of their
// own (Anonymous: 0; copied-on-write pages are anonymous): dropping such a
// mapping's pages loses nothing, the next access reads them from the file
// again. Private_Dirty is no guide: it also counts the file's own pages
// not yet written back, as in a freshly built binary.
func cleanFileMappings(smaps io.Reader, path string) []addrRange {
	var out []addrRange
	var cur addrRange
	candidate, clean := false, false
	flush := func() {
		if candidate && clean {
			out = append(out, cur)
		}
		candidate = false
	}
	sc := bufio.NewScanner(smaps)
	for sc.Scan() {
		fields := bytes.Fields(sc.Bytes())
		if len(fields) == 0 {
			continue
		}
		if !bytes.HasSuffix(fields[0], []byte(":")) {
			// A mapping's header: start-end perms offset dev inode [path].
			flush()
			if len(fields) < 6 || string(fields[5]) != path {
				continue
			}
			if perms := string(fields[1]); perms != "r-xp" && perms != "r--p" {
				continue
			}
			start, end, ok := bytes.Cut(fields[0], []byte("-"))
			if !ok {
				continue
			}
			lo, err1 := strconv.ParseUint(string(start), 16, 64)
			hi, err2 := strconv.ParseUint(string(end), 16, 64)
			if err1 != nil || err2 != nil || hi <= lo {
				continue
			}
			cur, candidate, clean = addrRange{lo, hi}, true, false
			continue
		}
		if !candidate || len(fields) < 2 {
			continue
		}
		if string(fields[0]) == "Anonymous:" {
			n, err := strconv.ParseUint(string(fields[1]), 10, 64)
			clean = err == nil && n == 0
		}
	}
	flush()
	return out
}
