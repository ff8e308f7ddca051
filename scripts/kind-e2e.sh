#!/usr/bin/env bash
# make kind-e2e: a kind cluster, the aerocdn image built and loaded, the chart installed, then
# the e2e tier (tests/e2e) and the integration scenarios (tests/integration) through KUBECONFIG.
#
# Needs: kind, kubectl, helm (optional: without it the Helm library installs), buildah + podman (scripts/image.sh; no Docker daemon needed to build),
# and a container runtime kind supports (Docker or rootful podman). Python deps: .venv.
#
# Environment:
#   CLUSTER        kind cluster name (default aerocdn-e2e)
#   KEEP_CLUSTER   1: leave the cluster running afterwards (default: delete it)
#   SKIP_BUILD     1: do not build the image (load an existing $IMAGE)
#   INTEGRATION    0: skip the integration scenarios after the e2e tier
#   AEROSPIKE_PROBE  chart value aerospikeProbe (default aerospike: ask the real Aerospike pods)
#   KIND_EXPERIMENTAL_PROVIDER  podman (the default where there is no docker command)
#   KIND_VERSION   kind to build with `go install` when none is on PATH (default v0.30.0)
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${CLUSTER:-aerocdn-e2e}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
IMAGE=${IMAGE:-aerocdn:$version}
RELEASE=aerocdn
NAMESPACE=aerocdn-system
VENV=${VENV:-.venv}
work=$(mktemp -d)
export KUBECONFIG=$work/kubeconfig

KIND_VERSION=${KIND_VERSION:-v0.30.0}
if ! command -v kind >/dev/null; then
  # kind is a Go module: built here from the Go module proxy, kept in the cache.
  bin=${AEROCDN_CACHE:-$HOME/.cache/aerocdn}/kind-$KIND_VERSION
  if [[ ! -x $bin/kind ]]; then
    command -v go >/dev/null || { echo "kind-e2e: kind (or Go, to build it) is required" >&2; exit 1; }
    echo "kind-e2e: building kind $KIND_VERSION" >&2
    GOBIN=$bin go install "sigs.k8s.io/kind@$KIND_VERSION"
  fi
  PATH=$bin:$PATH
fi
command -v kubectl >/dev/null || { echo "kind-e2e: kubectl is required" >&2; exit 1; }
if [[ -z ${KIND_EXPERIMENTAL_PROVIDER:-} ]] && ! command -v docker >/dev/null; then
  export KIND_EXPERIMENTAL_PROVIDER=podman  # no Docker: kind's podman provider (rootful)
fi

cleanup() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "kind-e2e: failed (exit $rc); operator log:" >&2
    kubectl logs -n "$NAMESPACE" "deployment/$RELEASE-operator" --tail=200 >&2 || true
  fi
  if [[ ${KEEP_CLUSTER:-0} == 1 ]]; then
    echo "kind-e2e: cluster $CLUSTER kept; KUBECONFIG=$KUBECONFIG" >&2
  else
    kind delete cluster --name "$CLUSTER" >&2 || true
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT

echo "kind-e2e: creating kind cluster $CLUSTER" >&2
kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --wait 120s

archive=$work/aerocdn-image.tar
if [[ ${SKIP_BUILD:-0} == 1 ]]; then
  podman save --format docker-archive -o "$archive" "$IMAGE"
else
  IMAGE=$IMAGE bash scripts/image.sh --archive "$archive"
fi
echo "kind-e2e: loading $IMAGE into $CLUSTER" >&2
kind load image-archive "$archive" --name "$CLUSTER"

echo "kind-e2e: installing the chart (release $RELEASE in $NAMESPACE)" >&2
kubectl create namespace "$NAMESPACE"
kubectl label namespace "$NAMESPACE" pod-security.kubernetes.io/enforce=restricted
values=(--set "aerospikeProbe=${AEROSPIKE_PROBE:-aerospike}" --set image.pullPolicy=Never)
if command -v helm >/dev/null; then
  helm install "$RELEASE" charts/aerocdn -n "$NAMESPACE" "${values[@]}"
else
  # No helm binary: the same install with the Helm library (helm-python-sdk): CRDs from the
  # chart's crds/ first, then its rendered templates.
  "$VENV/bin/python" - "$NAMESPACE" "$RELEASE" "$work/chart.yaml" "${values[@]}" <<'PY'
import sys
import helm_python as helm
namespace, release, out, *sets = sys.argv[1:]
values: dict = {}
for expression in sets[1::2]:
    for key, value in helm.parse_set_string(expression).items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
with helm.Chart.load("charts/aerocdn") as chart:
    manifests = chart.render(values, name=release, namespace=namespace, is_install=True)
with open(out, "w") as f:
    for path, text in sorted(manifests.items()):
        if path.endswith(".yaml") and text.strip():
            f.write(f"---\n# {path}\n{text}\n")
PY
  kubectl apply --server-side -f charts/aerocdn/crds/
  kubectl wait --for=condition=Established --timeout=60s \
    crd/cacheclusters.aerocdn.dev crd/contentedges.aerocdn.dev
  kubectl apply -f "$work/chart.yaml"
fi
kubectl rollout status -n "$NAMESPACE" "deployment/$RELEASE-operator" --timeout=300s

echo "kind-e2e: e2e tier" >&2
AEROCDN_E2E_NAMESPACE=$NAMESPACE AEROCDN_E2E_RELEASE=$RELEASE \
  "$VENV/bin/pytest" -p no:randomly tests/e2e -v --timeout=1800

if [[ ${INTEGRATION:-1} == 1 ]]; then
  echo "kind-e2e: integration scenarios (the in-cluster operator is scaled to 0 first)" >&2
  kubectl scale -n "$NAMESPACE" "deployment/$RELEASE-operator" --replicas=0
  kubectl wait -n "$NAMESPACE" --for=delete pod -l app.kubernetes.io/component=operator \
    --timeout=120s
  "$VENV/bin/pytest" -p no:randomly tests/integration/test_operator.py \
    tests/integration/test_install.py -v --timeout=1800
fi
echo "kind-e2e: passed" >&2
