package agent

import (
	"bufio"
	"bytes"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// dropExecutablePages unmaps the resident pages of the agent's own
// executable that are only read (code, read-only data) from its page
// tables, and returns the bytes dropped. Attaching runs a large part of
// the agent's code once (DWARF, ELF and BTF parsing, the kernel objects'
// loading), and the kernel maps up to 64 KiB of the cached file around
// each fault: afterwards nearly all of the 19 MiB executable counted as
// resident, most of it never run again. The pages stay in the page cache
// (they are the file's, shared and clean), so the ones still needed come
// back with a minor fault. Writable mappings are left alone: their
// copied-on-write pages would be lost.
func dropExecutablePages() int {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0
	}
	defer f.Close()
	dropped := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 6 || string(fields[5]) != exe {
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
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(lo), uintptr(hi-lo), unix.MADV_DONTNEED); errno == 0 {
			dropped += int(hi - lo)
		}
	}
	return dropped
}
