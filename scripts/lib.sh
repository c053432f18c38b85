# Shared by the build scripts: source it after defining die().

# find_go sets go_cmd to the Go toolchain: $GO, else go on PATH, else
# /usr/local/go/bin/go (a fresh Debian machine with Go unpacked there often
# lacks it on PATH).
find_go() {
	go_cmd=${GO:-}
	if [[ -z $go_cmd ]]; then
		if command -v go >/dev/null 2>&1; then
			go_cmd=go
		elif [[ -x /usr/local/go/bin/go ]]; then
			go_cmd=/usr/local/go/bin/go
		else
			die "no Go toolchain found: install Go 1.26 (or newer) and put it on PATH, or set GO=/path/to/go"
		fi
	fi
	"$go_cmd" version >/dev/null 2>&1 || die "'$go_cmd version' does not run; check the GO variable or your Go install"
}
