#!/usr/bin/env bash
# Build the Kubernetes control plane that the DaemonSet manifest tests run against: etcd,
# kube-apiserver and kubectl, from the wrapper module deploy/daemonset/kubetools (its go.mod
# pins k8s.io/kubernetes and go.etcd.io/etcd/server/v3). Prints the directory holding the three
# binaries on stdout; progress and errors go to stderr, so `dir=$(scripts/build-kube.sh)` works.
#
# Cached: when build/kube holds the binaries and the stamp beside them matches the sha256 of the
# wrapper module's files and of this script, nothing runs. A cold build takes about 15 minutes
# on a 2-core machine; a warm Go build cache makes it a few seconds.
# Needs only Go and the Go module proxy. Safe to run concurrently: a lock serialises builds.
#
# Environment:
#   GO                      go command (default: go on PATH, else /usr/local/go/bin/go)
#   ROUTERSCOPE_BUILD_JOBS  go build parallelism (-p) (default 1, because the machines this
#                           runs on are small and shared)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
self=$root/scripts/$(basename "${BASH_SOURCE[0]}")
module=$root/deploy/daemonset/kubetools
out=$root/build/kube
stamp=$out/inputs.sha256
binaries=(etcd kube-apiserver kubectl)

say() { echo "build-kube: $*" >&2; }
die() {
	echo "build-kube: error: $*" >&2
	exit 1
}

[[ -f $module/go.mod && -f $module/go.sum ]] || die "$module/go.mod or go.sum is missing; restore them from git (git checkout -- deploy/daemonset/kubetools)"
# Everything that decides what gets built: the module's requirements, the etcd main package and
# this script's flags.
want=$(cd "$module" && cat go.mod go.sum etcd/main.go "$self" | sha256sum | cut -d' ' -f1)

cached() {
	[[ -f $stamp && "$(cat "$stamp")" == "$want" ]] || return 1
	local b
	for b in "${binaries[@]}"; do
		[[ -x $out/$b ]] || return 1
	done
}
if cached; then
	say "up to date (inputs sha256 ${want:0:12})"
	echo "$out"
	exit 0
fi

# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
find_go

mkdir -p "$out"
if command -v flock >/dev/null 2>&1; then
	exec 9>"$root/build/.kube.lock"
	flock 9
	if cached; then
		say "built by a concurrent run"
		echo "$out"
		exit 0
	fi
fi

jobs=${ROUTERSCOPE_BUILD_JOBS:-1}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || die "ROUTERSCOPE_BUILD_JOBS=$jobs is not a positive integer; unset it or set e.g. 2"

# kubectl compares its own version with the server's and the API server reports the version
# compiled into k8s.io/component-base/version; a plain `go build` leaves v0.0.0-master there,
# which kubectl refuses. The version is read from the wrapper's go.mod so the two cannot drift.
kube_version=$(cd "$module" && GOFLAGS=-mod=mod "$go_cmd" list -m -f '{{.Version}}' k8s.io/kubernetes) ||
	die "cannot read the k8s.io/kubernetes version from $module/go.mod"
[[ $kube_version =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || die "k8s.io/kubernetes version '$kube_version' in $module/go.mod is not a release vX.Y.Z"
major=${BASH_REMATCH[1]}
minor=${BASH_REMATCH[2]}
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"

rm -f "$stamp"
say "building etcd, kube-apiserver and kubectl $kube_version (go build -p $jobs; about 15 minutes when cold)"
start=$SECONDS
log=$root/build/kube-build.log
# CGO_ENABLED=0: upstream releases these binaries static too, and it spares a C toolchain.
if ! (cd "$module" && CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -buildvcs=false -trimpath -p=$jobs" \
	"$go_cmd" build -ldflags "$ldflags" -o "$out/" \
	./etcd k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl) >"$log" 2>&1; then
	tail -n 40 "$log" >&2
	die "go build of the control plane did not succeed (last lines above, full log in $log); a download error there usually means the Go module proxy is unreachable ('$go_cmd env GOPROXY')"
fi
for b in "${binaries[@]}"; do
	[[ -x $out/$b ]] || die "the build finished but $out/$b is missing (full log in $log)"
done

echo "$want" >"$stamp.tmp"
mv "$stamp.tmp" "$stamp"
say "built in $((SECONDS - start))s into $out"
echo "$out"
