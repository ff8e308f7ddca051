#!/usr/bin/env bash
# An Aerospike server image made from a given asd binary, for tests on real nodes (no registry,
# no Docker daemon): the binary, the shared libraries it needs that the base lacks, and what a
# CacheCluster pod expects (asd on PATH, /bin/sh, mkdir and sed for the config init container,
# user 10001, /etc/aerospike and /opt/aerospike/{work,data}).
#
#   scripts/aerospike-image.sh ASD ARCHIVE [NAME]
#
# ASD      the asd binary (built elsewhere; nothing here builds Aerospike)
# ARCHIVE  the docker-archive to write (what `ctr images import` and `kind load` read)
# NAME     the image name in the archive (default aerocdn-aerospike:test), as a pod spec
#          names it (docker.io/library/ is added)
#
# The base is scripts/image.sh's (a debootstrapped Debian bookworm, made once and cached), so
# the binary must be built for it (glibc). Needs root (buildah mount) and buildah.
set -euo pipefail
cd "$(dirname "$0")/.."

asd=${1:?usage: aerospike-image.sh ASD ARCHIVE [NAME]}
archive=${2:?usage: aerospike-image.sh ASD ARCHIVE [NAME]}
name=${3:-aerocdn-aerospike:test}
[[ -x $asd ]] || { echo "aerospike-image.sh: $asd is not an executable" >&2; exit 1; }
[[ $name == *:* ]] || name="$name:latest"

base=$(bash scripts/image.sh --base)
tag=localhost/${name}
ctr=$(buildah from "$base")
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
mnt=$(buildah mount "$ctr")

install -D -m 0755 "$asd" "$mnt/usr/bin/asd"
# Libraries the binary links that the base does not have, at the path the host has them.
while read -r lib; do
  if [[ ! -e $mnt$lib ]]; then
    echo "aerospike-image.sh: adding $lib" >&2
    install -D -m 0644 "$(readlink -f "$lib")" "$mnt$lib"
  fi
done < <(ldd "$asd" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
if chroot "$mnt" ldd /usr/bin/asd | grep -q 'not found'; then
  chroot "$mnt" ldd /usr/bin/asd >&2
  echo "aerospike-image.sh: asd misses libraries in the image" >&2
  exit 1
fi
chroot "$mnt" /usr/bin/asd --version >&2

grep -q '^aerospike:' "$mnt/etc/group" || echo 'aerospike:x:10001:' >>"$mnt/etc/group"
grep -q '^aerospike:' "$mnt/etc/passwd" ||
  echo 'aerospike:x:10001:10001:Aerospike:/opt/aerospike:/usr/sbin/nologin' >>"$mnt/etc/passwd"
mkdir -p "$mnt/etc/aerospike" "$mnt/opt/aerospike/work" "$mnt/opt/aerospike/data"
chown -R 10001:10001 "$mnt/etc/aerospike" "$mnt/opt/aerospike"
buildah umount "$ctr" >/dev/null

buildah config --entrypoint '[]' "$ctr"
buildah config --user 10001:10001 --workingdir /opt/aerospike --cmd '["asd", "--foreground", "--config-file", "/etc/aerospike/aerospike.conf"]' \
  --port 3000 --port 3001 --port 3002 \
  --label org.opencontainers.image.description="$("$asd" --version | head -1)" \
  "$ctr"
buildah commit --rm "$ctr" "$tag" >&2
trap - EXIT
rm -f "$archive"
mkdir -p "$(dirname "$archive")"
buildah push "$tag" "docker-archive:$archive:docker.io/library/$name" >&2
echo "aerospike-image.sh: wrote $archive ($name)" >&2
