#!/usr/bin/env bash
# `make demo`: the whole thing on a machine with no cluster. Starts the local control plane
# (unless KUBECONFIG names a cluster), installs the CRDs and RBAC, applies the examples and
# runs the operator in the foreground. Ctrl-C stops the operator and the local control plane.
# AEROCDN_DEMO_REAL_NODES=1 (root): one real node beside the simulated ones, with the image
# imported (built by scripts/image.sh); edge pods placed there (spec.placement, see below) run
# for real.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
PROBE=${AEROCDN_PROBE:-kubernetes}
STATE=${AEROCDN_DEMO_DIR:-$HOME/.cache/aerocdn/demo}

if [[ -n ${KUBECONFIG:-} ]]; then
  echo "demo: using the cluster named by KUBECONFIG=$KUBECONFIG"
else
  bash tests/cluster/build.sh >/dev/null
  real=${AEROCDN_DEMO_REAL_NODES:-0}
  image=()
  if ((real > 0)); then
    archive=$STATE/aerocdn-image.tar
    [[ -f $archive ]] || bash scripts/image.sh --archive "$archive"
    image=(--image "$archive")
  fi
  "$BIN/python" -m aerocdn_localcluster up --dir "$STATE" --real-nodes "$real" "${image[@]}"
  export KUBECONFIG="$STATE/cluster/kubeconfig"
  trap '"$BIN/python" -m aerocdn_localcluster down --dir "$STATE"' EXIT
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
if ((${AEROCDN_DEMO_REAL_NODES:-0} > 0)); then
  cat <<'MSG'
Real edge pods: place a region on the real node and reach it from the node's network namespace:

  kubectl patch ce web --type=merge -p '{"spec": {"imagePullPolicy": "Never", "placement":
    {"nodeSelector": {"aerocdn.dev/node": "real"}, "tolerations": [{"key":
    "aerocdn.dev/real-node", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]}}}'
  ip netns exec $(ip netns list | grep -o 'aerocdn-[0-9a-f]*-n0') \
    curl -H 'Host: <a host of the ContentEdge>' http://<the edge Service's ClusterIP>/
MSG
fi
"$BIN/aerocdn" run --aerospike-probe="$PROBE" --metrics-port "${AEROCDN_METRICS_PORT:-8080}"
