package agent

import (
	"bufio"
	"bytes"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// exeResident sums the resident kB of the executable's read-only
// mappings (code and read-only data) from /proc/self/smaps.
func exeResident(t *testing.T) int {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kb, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := bytes.Fields(sc.Bytes())
		if len(fields) >= 6 && bytes.Contains(fields[0], []byte("-")) {
			perms := string(fields[1])
			in = string(fields[5]) == exe && (perms == "r-xp" || perms == "r--p")
			continue
		}
		if in && len(fields) >= 2 && string(fields[0]) == "Rss:" {
			n, err := strconv.Atoi(string(fields[1]))
			if err != nil {
				t.Fatal(err)
			}
			kb += n
		}
	}
	return kb
}

// TestDropExecutablePages: the read-only pages of the test binary leave
// the resident set (the few the test runs afterwards come back), and the
// program keeps running.
func TestDropExecutablePages(t *testing.T) {
	before := exeResident(t)
	dropped := dropExecutablePages()
	after := exeResident(t)
	if dropped == 0 || after >= before {
		t.Fatalf("dropped %d bytes: executable resident %d kB before, %d kB after", dropped, before, after)
	}
	t.Logf("executable resident %d kB -> %d kB", before, after)
}

// TestCleanFileMappings: only the executable's read-only private mappings
// with no page of their own are dropped; a relocated read-only mapping
// (copied pages), a writable one and another file's are kept.
func TestCleanFileMappings(t *testing.T) {
	const smaps = `00400000-00a00000 r-xp 00000000 08:01 42 /bin/agent
Size:               6144 kB
Rss:                4096 kB
Private_Dirty:       684 kB
Anonymous:             0 kB
00a00000-00c00000 r--p 00600000 08:01 42 /bin/agent
Size:               2048 kB
Private_Dirty:         8 kB
Anonymous:             8 kB
00a10000-00a20000 r--p 00610000 08:01 42 /bin/agent
Private_Dirty:         0 kB
Anonymous:             4 kB
00c00000-00d00000 r--p 00800000 08:01 42 /bin/agent
Private_Dirty:         0 kB
Anonymous:             0 kB
00d00000-00e00000 rw-p 00900000 08:01 42 /bin/agent
Private_Dirty:         0 kB
Anonymous:             0 kB
00e00000-00f00000 r--p 00000000 08:01 43 /bin/other
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0000000000-7f0000001000 r--p 00000000 00:00 0
Anonymous:             0 kB
`
	got := cleanFileMappings(strings.NewReader(smaps), "/bin/agent")
	want := []addrRange{{0x400000, 0xa00000}, {0xc00000, 0xd00000}}
	if !slices.Equal(got, want) {
		t.Fatalf("cleanFileMappings = %x, want %x", got, want)
	}
}
