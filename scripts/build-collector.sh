#!/usr/bin/env bash
# Build routerscope's OpenTelemetry Collector with the official builder (OCB) from
# config/collector/builder.yaml, and print the binary's absolute path on stdout
# (progress and errors go to stderr, so `bin=$(scripts/build-collector.sh)` works).
#
# Cached: when build/otelcol/routerscope-otelcol exists and the manifest's sha256 recorded
# beside it matches, nothing runs. The builder itself is installed once into build/tools.
# Needs only Go and the Go module proxy. Safe to run concurrently: a lock serialises builds.
#
# Environment:
#   GO                      go command (default: go on PATH, else /usr/local/go/bin/go)
#   ROUTERSCOPE_BUILD_JOBS  go build parallelism (-p) for the collector build (default 1,
#                           because the machines this runs on are small and shared)
set -euo pipefail

readonly BUILDER_VERSION=v0.162.0
readonly BUILDER_MODULE=go.opentelemetry.io/collector/cmd/builder
readonly DIST_NAME=routerscope-otelcol

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
manifest=$root/config/collector/builder.yaml
tools=$root/build/tools
out=$root/build/otelcol
binary=$out/$DIST_NAME
stamp=$binary.manifest.sha256

say() { echo "build-collector: $*" >&2; }
die() {
	echo "build-collector: error: $*" >&2
	exit 1
}

[[ -f $manifest ]] || die "manifest $manifest is missing; restore it from git (git checkout -- config/collector/builder.yaml)"
want=$(sha256sum "$manifest" | cut -d' ' -f1)

# The fast path runs before anything else so that tests calling this script on every run
# pay only for a hash when the collector is already built.
cached() { [[ -x $binary && -f $stamp && "$(cat "$stamp")" == "$want" ]]; }
if cached; then
	say "up to date (manifest sha256 ${want:0:12})"
	echo "$binary"
	exit 0
fi

# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
find_go
# The builder runs `go` from PATH itself, so the toolchain chosen here must come first there.
go_dir=$(dirname "$(command -v "$go_cmd")")
export PATH="$go_dir:$PATH"

mkdir -p "$tools" "$root/build"

# Serialise concurrent callers (parallel test packages): the second one waits and then
# finds the cache fresh instead of building the same thing twice into the same directory.
if command -v flock >/dev/null 2>&1; then
	exec 9>"$root/build/.otelcol.lock"
	flock 9
	if cached; then
		say "built by a concurrent run"
		echo "$binary"
		exit 0
	fi
fi

# Module proxy builds are reproducible, so a builder of the right version can be reused.
builder=$tools/builder
have=""
if [[ -x $builder ]]; then
	have=$("$go_cmd" version -m "$builder" 2>/dev/null | awk '$1 == "mod" { print $3 }')
fi
if [[ $have != "$BUILDER_VERSION" ]]; then
	say "installing $BUILDER_MODULE@$BUILDER_VERSION into $tools"
	if ! GOBIN=$tools "$go_cmd" install "$BUILDER_MODULE@$BUILDER_VERSION" >&2; then
		die "go install $BUILDER_MODULE@$BUILDER_VERSION did not succeed (output above); check that the Go module proxy is reachable ('$go_cmd env GOPROXY') and that your Go is at least 1.26"
	fi
fi

jobs=${ROUTERSCOPE_BUILD_JOBS:-1}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || die "ROUTERSCOPE_BUILD_JOBS=$jobs is not a positive integer; unset it or set e.g. 2"

# A stale stamp must not survive a failed rebuild.
rm -f "$stamp"
say "building $DIST_NAME from config/collector/builder.yaml (go build -p $jobs; a few minutes when cold)"
start=$SECONDS
log=$root/build/otelcol-build.log
# -buildvcs=false: the generated module sits inside this repository's work tree, and VCS
# stamping there fails in git worktrees and on machines without git.
if ! (cd "$root" && GOFLAGS="${GOFLAGS:-} -buildvcs=false -p=$jobs" "$builder" --config "$manifest") >"$log" 2>&1; then
	tail -n 40 "$log" >&2
	die "the collector builder did not succeed (last lines above, full log in $log); a 'go subcommand' error there is usually the module proxy being unreachable or a component version in $manifest that does not exist"
fi
[[ -x $binary ]] || die "the builder finished but $binary is missing; check dist.name and dist.output_path in $manifest (full log in $log)"

echo "$want" >"$stamp.tmp"
mv "$stamp.tmp" "$stamp"
say "built in $((SECONDS - start))s: $(du -h "$binary" | cut -f1) at $binary"
echo "$binary"
