#!/usr/bin/env bash
# Build (or reuse) the local cluster: the control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok) at the versions pinned in go.mod/go.sum beside
# this script, and what a real node runs: kubelet and kube-proxy (the same k8s.io/kubernetes
# module), CoreDNS (coredns/go.mod: a module of its own) and the pause binary (pause.c from
# the k8s.io/kubernetes module, linked statically with gcc).
#
# Binaries go to ${AEROCDN_CACHE:-$HOME/.cache/aerocdn}/cluster/<key>/bin, where <key> names
# the Kubernetes release and hashes go.mod, go.sum, coredns/*, this script and the Go version: changing
# any of them builds into a new directory; otherwise nothing is rebuilt.
#
# The last line printed on success is the bin directory. Any failure (no Go, a Go that is too
# old, an unreachable module proxy, a compile error) exits non-zero with a message on stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${AEROCDN_CACHE:-$HOME/.cache/aerocdn}"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok kubelet kube-proxy coredns pause)
# kwok's own stage definitions (shipped in its module) that make nodes Ready, keep their leases
# fresh, and take pods to Running/Ready, Jobs' pods to Succeeded, and deleted pods away.
kwok_stages=(node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml)

fail() {
    echo "tests/cluster/build.sh: ERROR: $*" >&2
    exit 1
}

command -v gcc >/dev/null 2>&1 || fail "gcc is needed to build the pause binary (apt-get install gcc libc6-dev)"
command -v go >/dev/null 2>&1 || fail "the Go toolchain ('go') is not on PATH; install Go $(sed -n 's/^go //p' "$here/go.mod") or newer"
go_version="$(go env GOVERSION)" || fail "'go env GOVERSION' failed"

k8s_version="$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' "$here/go.mod")"
[[ -n "$k8s_version" ]] || fail "k8s.io/kubernetes is not pinned in $here/go.mod"
hash="$( { cat "$here/go.mod" "$here/go.sum" "$here/coredns/go.mod" "$here/coredns/go.sum" \
    "$here/coredns/main.go" "$here/build.sh"; echo "$go_version"; } | sha256sum | cut -c1-12)"
key="k8s-${k8s_version}-${hash}"
bin_dir="$cache_root/cluster/$key/bin"

have_all=1
[[ -s "$bin_dir/kwok-stages.yaml" ]] || have_all=0
for b in "${binaries[@]}"; do
    [[ -x "$bin_dir/$b" ]] || have_all=0
done
if [[ "$have_all" == 1 ]]; then
    echo "control plane binaries up to date ($key)" >&2
    echo "$bin_dir"
    exit 0
fi

mkdir -p "$cache_root/cluster"
# The Go build cache stays wherever Go keeps it (by default ~/.cache/go-build), outside the repo.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath -mod=readonly"
# Two cores: let the go command run two compile jobs at a time, no more.
jobs="${AEROCDN_BUILD_JOBS:-2}"

cd "$here"
echo "downloading modules for $key (Go $go_version, GOPROXY=$(go env GOPROXY))" >&2
if ! { go mod download && (cd coredns && go mod download); } 2>"$cache_root/.download.err"; then
    cat "$cache_root/.download.err" >&2 || true
    fail "could not download the pinned modules: is the Go module proxy reachable?"
fi
if ! { go mod verify && (cd coredns && go mod verify); } >/dev/null 2>"$cache_root/.download.err"; then
    cat "$cache_root/.download.err" >&2 || true
    fail "'go mod verify' failed: the module cache does not match go.sum"
fi

minor="$(echo "$k8s_version" | cut -d. -f2)"
version_pkgs=(k8s.io/component-base/version k8s.io/client-go/pkg/version)
ldflags="-s -w"
for p in "${version_pkgs[@]}"; do
    ldflags+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

staging="$(mktemp -d "$cache_root/cluster/.build-$key.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
start=$(date +%s)
echo "building ${binaries[*]} into $bin_dir (this takes a while on a cold cache)" >&2
go build -p "$jobs" -ldflags="$ldflags" -o "$staging/" \
    go.etcd.io/etcd/server/v3 \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy \
    sigs.k8s.io/kwok/cmd/kwok \
    || fail "go build failed (see the compiler output above)"
(cd coredns && go build -p "$jobs" -ldflags="-s -w" -o "$staging/coredns" .) \
    || fail "go build of coredns failed (see the compiler output above)"
# The pod sandbox's pause process, from the same Kubernetes release (no registry is involved:
# the local cluster packs it into an image and imports it into each node's containerd).
k8s_dir="$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)" || fail "cannot locate the kubernetes module"
gcc -Os -static -Wall -Werror -DVERSION="$k8s_version" -o "$staging/pause" \
    "$k8s_dir/build/pause/linux/pause.c" || fail "gcc could not build pause"
strip "$staging/pause" 2>/dev/null || true
# The etcd main package is the module root go.etcd.io/etcd/server/v3: go names it 'server'.
for name in server v3; do
    [[ -e "$staging/$name" ]] && mv "$staging/$name" "$staging/etcd"
done
for b in "${binaries[@]}"; do
    [[ -x "$staging/$b" ]] || fail "the build did not produce $b"
done
kwok_dir="$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)" || fail "cannot locate the kwok module"
for s in "${kwok_stages[@]}"; do
    [[ -s "$kwok_dir/kustomize/stage/$s" ]] || fail "kwok stage $s is missing from $kwok_dir"
    cat "$kwok_dir/kustomize/stage/$s"
    echo "---"
done >"$staging/kwok-stages.yaml"
chmod 755 "$staging"
mkdir -p "$(dirname "$bin_dir")"
rm -rf "$bin_dir"
mv "$staging" "$bin_dir"
trap - EXIT
{ echo "key=$key"; echo "go=$go_version"; echo "seconds=$(( $(date +%s) - start ))"; } >"$bin_dir/../build-info"
echo "built the local cluster binaries in $(( $(date +%s) - start )) s" >&2
echo "$bin_dir"
