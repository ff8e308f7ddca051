#!/usr/bin/env bash
# Build the aerocdn image (operator + edge + nginx) with buildah, without a Docker daemon.
#
#   scripts/image.sh                    build aerocdn:0.1.0 (base: a local debootstrapped bookworm)
#   scripts/image.sh --smoke            ... then run `aerocdn --help` and `nginx -t` in it
#   scripts/image.sh --archive out.tar  ... then write a docker-archive (for `kind load image-archive`)
#   scripts/image.sh --base             only make sure the base image exists; print its name
#
# Environment:
#   IMAGE        tag to build (default aerocdn:<version in pyproject.toml>)
#   BASE_IMAGE   base image; unset: localhost/aerocdn-base:bookworm, made here with debootstrap
#   MIRROR       Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   RUNTIME      OCI runtime for RUN steps and smoke runs (default runc)
#   AEROCDN_CACHE  where the base rootfs tarball is kept (default ~/.cache/aerocdn)
#   CA_BUNDLE    CA bundle pip trusts during the build (default: the host's)
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=false
archive=""
base_only=false
while (($#)); do
  case $1 in
    --smoke) smoke=true ;;
    --archive) archive=${2:?--archive needs a path}; shift ;;
    --base) base_only=true ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
IMAGE=${IMAGE:-aerocdn:$version}
RUNTIME=${RUNTIME:-runc}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
CACHE=${AEROCDN_CACHE:-$HOME/.cache/aerocdn}
# Limits that work where the defaults (unlimited) are refused by the runtime.
LIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)

# Debian's buildah, podman (smoke runs, archives), runc and debootstrap (the base image).
missing=()
for pkg in buildah podman runc debootstrap; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "image.sh: needs ${missing[*]} (apt-get install -y ${missing[*]})" >&2
    exit 1
  fi
  echo "image.sh: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

base_from_debootstrap() {
  local tag=localhost/aerocdn-base:bookworm
  if buildah inspect --type image "$tag" >/dev/null 2>&1; then
    echo "$tag"; return
  fi
  command -v debootstrap >/dev/null || { echo "image.sh: debootstrap is required" >&2; exit 1; }
  mkdir -p "$CACHE"
  local tarball=$CACHE/rootfs-bookworm-minbase.tar
  if [[ ! -f $tarball ]]; then
    local rootfs
    rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/aerocdn-rootfs.XXXXXX")
    echo "image.sh: debootstrap bookworm into $rootfs" >&2
    debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >&2
    # Files deleted in a later layer still weigh in the image: trim the base itself.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
      "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
      "$rootfs"/usr/share/locale/*
    tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
  fi
  local ctr
  ctr=$(buildah from scratch)
  buildah add "$ctr" "$tarball" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/bash "$ctr"
  buildah commit --rm "$ctr" "$tag" >&2
  echo "$tag"
}

base=${BASE_IMAGE:-$(base_from_debootstrap)}
if $base_only; then
  echo "$base"
  exit 0
fi
echo "image.sh: building $IMAGE from $base" >&2
# The host's CA bundle, so pip reaches PyPI wherever the host does (a build secret: not stored).
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
secret=()
[[ -s $CA_BUNDLE ]] && secret=(--secret "id=ca,src=$CA_BUNDLE")
buildah build --runtime "$RUNTIME" "${LIMITS[@]}" --network host "${secret[@]}" \
  --build-arg "BASE_IMAGE=$base" ${PIP_INDEX_URL:+--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL"} \
  -t "$IMAGE" -f Dockerfile .
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE"

if $smoke; then
  run=(podman run --rm --runtime "$RUNTIME" "${LIMITS[@]}" --network none --read-only
       --user 10001:10001 --tmpfs /tmp --tmpfs /var/cache/aerocdn)
  echo "image.sh: smoke: aerocdn --help" >&2
  "${run[@]}" "$IMAGE" aerocdn --help >/dev/null
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # An nginx.conf exactly as the operator renders it for the examples' first edge region.
  "${PYTHON:-.venv/bin/python}" - "$work/nginx.conf" <<'PY'
import sys
from aerocdn.cli import load_manifests
from aerocdn.render import render_all
objs = render_all(load_manifests(["manifests/examples"]))
conf = next(o["data"]["nginx.conf"] for o in objs
            if o["kind"] == "ConfigMap" and "nginx.conf" in o.get("data", {}))
open(sys.argv[1], "w").write(conf)
PY
  chmod 644 "$work/nginx.conf"
  echo "image.sh: smoke: nginx -t with the rendered nginx.conf" >&2
  "${run[@]}" -v "$work/nginx.conf:/etc/aerocdn/nginx/nginx.conf:ro" "$IMAGE" \
    nginx -t -c /etc/aerocdn/nginx/nginx.conf
  echo "image.sh: smoke passed" >&2
fi

if [[ -n $archive ]]; then
  # Fully qualified as a pod spec's `aerocdn:0.1.0` resolves inside kind's containerd.
  name=${IMAGE##*/}
  [[ $name == *:* ]] || name="$name:latest"
  rm -f "$archive"
  buildah push "$IMAGE" "docker-archive:$archive:docker.io/library/$name"
  echo "image.sh: wrote $archive" >&2
fi
