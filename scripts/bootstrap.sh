#!/usr/bin/env bash
# Install what aerocdn needs on a fresh Debian 12 machine, then the Python environment.
# Idempotent: re-running it only installs what is missing. Used by `make` targets and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(nginx libnginx-mod-http-cache-purge
  # aerocdn's nginx module (the Age of L1 answers), built below by scripts/nginx-module.sh
  # against nginx's source: make, the headers nginx's configure checks for (+ gcc below)
  make libpcre2-dev zlib1g-dev libssl-dev curl
  wrk lua5.4 lua5.1 openssl
  # real nodes of the local cluster: container runtime, CNI plugins, node networking (each node
  # in its own network namespace); gcc + libc6-dev build the static pause binary
  containerd runc containernetworking-plugins iproute2 iptables conntrack gcc libc6-dev
  # the image (scripts/image.sh, imported into the real nodes): buildah, podman, debootstrap
  buildah podman debootstrap)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]] && ! command -v sudo >/dev/null; then
    echo "bootstrap: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  echo "bootstrap: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# aerocdn's nginx module for this nginx (cached in ~/.cache/aerocdn/nginx-modules; the edge
# tests load it from there)
bash scripts/nginx-module.sh >/dev/null

command -v go >/dev/null || { echo "bootstrap: Go is required (the local control plane is built from Go modules)" >&2; exit 1; }

VENV=${VENV:-.venv}
# aerocdn (the image's one distribution) and the dev-only local cluster harness (localcluster/)
stamp="$VENV/.installed-$(cat pyproject.toml localcluster/pyproject.toml | sha256sum | cut -c1-16)"
if [[ ! -f $stamp ]]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -U pip
  "$VENV/bin/pip" install -q -e '.[test]' -e ./localcluster
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
