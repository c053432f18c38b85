#!/usr/bin/env bash
# Build the Helm CLI that the chart tests lint and render deploy/helm/routerscope with, from
# the Go module proxy (helm.sh/helm/v3 at the version below), into build/tools/helm-VERSION.
# Prints the binary's path on stdout; progress and errors go to stderr, so
# `helm=$(scripts/build-helm.sh)` works.
#
# Cached: when the binary exists nothing runs. A cold build takes a few minutes on 2 cores.
# Needs only Go and the module proxy. Safe to run concurrently: a lock serialises builds.
#
# Environment:
#   GO                      go command (default: go on PATH, else /usr/local/go/bin/go)
#   ROUTERSCOPE_BUILD_JOBS  go build parallelism (-p) (default 1: small, shared machines)
set -euo pipefail

version=v3.22.0
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$root/build/tools/helm-$version
bin=$out/helm

say() { echo "build-helm: $*" >&2; }
die() {
	echo "build-helm: error: $*" >&2
	exit 1
}

if [[ -x $bin ]]; then
	echo "$bin"
	exit 0
fi

# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
find_go

mkdir -p "$out"
if command -v flock >/dev/null 2>&1; then
	exec 9>"$root/build/.helm.lock"
	flock 9
	if [[ -x $bin ]]; then
		say "built by a concurrent run"
		echo "$bin"
		exit 0
	fi
fi
say "building helm $version from the module proxy into $out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Outside any module, so the project's go.mod is neither read nor changed.
(cd "$tmp" && GOBIN=$tmp GOFLAGS= CGO_ENABLED=0 "$go_cmd" install -p "${ROUTERSCOPE_BUILD_JOBS:-1}" \
	-ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$version") >&2 ||
	die "go install helm.sh/helm/v3/cmd/helm@$version failed (see above); check the module proxy (GOPROXY)"
mv "$tmp/helm" "$bin"
"$bin" version --short >&2 || die "the built helm does not run"
echo "$bin"
