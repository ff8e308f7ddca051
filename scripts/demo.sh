#!/usr/bin/env bash
# `make demo`: the whole thing on a machine with no cluster. Starts the local control plane
# (unless KUBECONFIG names a cluster), installs the CRDs and RBAC, applies the examples and
# runs the operator in the foreground. Ctrl-C stops the operator and the local control plane.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
PROBE=${AEROCDN_PROBE:-kubernetes}
STATE=${AEROCDN_DEMO_DIR:-$HOME/.cache/aerocdn/demo}

if [[ -n ${KUBECONFIG:-} ]]; then
  echo "demo: using the cluster named by KUBECONFIG=$KUBECONFIG"
else
  bash tests/cluster/build.sh >/dev/null
  "$BIN/python" -m aerocdn.localcluster up --dir "$STATE"
  export KUBECONFIG="$STATE/cluster/kubeconfig"
  trap '"$BIN/python" -m aerocdn.localcluster down --dir "$STATE"' EXIT
fi

kubectl apply --server-side --force-conflicts -k crds/ >/dev/null
kubectl wait --for=condition=Established --timeout=60s \
  crd/cacheclusters.aerocdn.dev crd/contentedges.aerocdn.dev >/dev/null
kubectl apply -f manifests/base/namespace.yaml -f manifests/base/rbac.yaml >/dev/null
kubectl apply -f manifests/examples/

cat <<MSG

demo: the operator runs below (probe=$PROBE; the local control plane has simulated nodes,
so pod readiness stands in for Aerospike's answers). In another terminal:

  export KUBECONFIG=$KUBECONFIG
  kubectl get cc,ce                 # Ready within seconds
  kubectl get cm web-routing -o jsonpath='{.data.routes\.json}'
  kubectl scale cc/us-east --replicas=2 && kubectl get events -w

Ctrl-C stops the operator and the local control plane.
MSG
"$BIN/aerocdn" run --aerospike-probe="$PROBE" --metrics-port "${AEROCDN_METRICS_PORT:-8080}"
