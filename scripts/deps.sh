#!/usr/bin/env bash
# deps.sh makes sure the tools `make test` needs are present. Missing ones are
# installed with apt-get when running as root on Debian; otherwise it stops
# with the one command that installs them.
#
#   scripts/deps.sh          install only what is missing (make test runs this)
#   scripts/deps.sh --all    install every package even when present (make deps)
#
# What each package is for: clang and llvm (llvm-strip) regenerate the eBPF
# objects; llvm also gives llvm-dwarfdump to the ABI tests; bpftool and
# libbpf-dev are for inspecting and the headers of other eBPF tools (the
# project pins its own headers under bpf/include); runc runs the image test;
# util-linux gives setpriv and unshare to the capability and procfs tests;
# git is needed by check-generated; curl by the demo.
set -euo pipefail

die() { echo "deps: $*" >&2; exit 1; }

# Each entry is "command package": the package is installed when the command
# is not found on PATH.
required=(
	"clang clang"
	"llvm-strip llvm"
	"llvm-dwarfdump llvm"
	"bpftool bpftool"
	"runc runc"
	"setpriv util-linux"
	"unshare util-linux"
	"git git"
	"curl curl"
)
# libbpf-dev has no command; check its header.
libbpf_header=${DEPS_LIBBPF_HEADER:-/usr/include/bpf/bpf_helpers.h}

all=false
if [[ ${1:-} == --all ]]; then
	all=true
fi

missing=()
add() {
	local p
	for p in "${missing[@]}"; do
		[[ $p == "$1" ]] && return 0
	done
	missing+=("$1")
}
for entry in "${required[@]}"; do
	read -r cmd pkg <<<"$entry"
	if $all || ! command -v "$cmd" >/dev/null 2>&1; then
		add "$pkg"
	fi
done
if $all || [[ ! -e $libbpf_header ]]; then
	add libbpf-dev
fi
if $all; then
	add make
	add ca-certificates
fi

if ((${#missing[@]} > 0)); then
	if [[ $(id -u) != 0 ]]; then
		die "missing packages: ${missing[*]}; install them with: sudo make deps"
	fi
	command -v apt-get >/dev/null 2>&1 ||
		die "missing packages: ${missing[*]}; no apt-get here: install them with your package manager"
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y "${missing[@]}"
fi

# The root eBPF tests pin maps and programs in bpffs; mount it when it is not.
if [[ $(id -u) == 0 ]] && command -v mountpoint >/dev/null 2>&1 && ! mountpoint -q /sys/fs/bpf; then
	mount -t bpf bpf /sys/fs/bpf || echo "deps: could not mount bpffs on /sys/fs/bpf; the root eBPF tests that pin will fail" >&2
fi
exit 0
