package agent

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
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
