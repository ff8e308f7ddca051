#!/usr/bin/env bash
# Build aerocdn's nginx module (nginx-modules/aerocdn_age: $aerocdn_age, the Age of L1 answers)
# as a dynamic module for the nginx installed here, and print the path of the .so.
#
#   scripts/nginx-module.sh               build if not cached; print the .so's path
#   scripts/nginx-module.sh --out FILE    ... and copy the .so to FILE (the image's build stage)
#   scripts/nginx-module.sh --print-path  only print where the .so is (or would be) cached
#
# The version and configure arguments come from `nginx -V`; the source is Debian's orig
# tarball of that version (its sha256 pinned below, or NGINX_ORIG_SHA256), configured with
# those arguments (--with-compat: a module built so loads into any --with-compat nginx of the
# same version) minus Debian's other dynamic modules, then `make modules`.  Cached under
# $AEROCDN_CACHE/nginx-modules/<nginx version>-<sha of the module source>/: fast when cached.
#
# Needs gcc, make, libc6-dev, libpcre2-dev, zlib1g-dev, libssl-dev, curl (scripts/bootstrap.sh).
#
# Environment:
#   NGINX              the nginx binary (default: nginx on PATH, else /usr/sbin/nginx)
#   AEROCDN_CACHE      cache directory (default ~/.cache/aerocdn)
#   DEBIAN_POOL        where the orig tarball is (default http://deb.debian.org/debian/pool/main/n/nginx)
#   NGINX_ORIG_SHA256  expected sha256 of nginx_<version>.orig.tar.gz, for a version not pinned here
set -euo pipefail
cd "$(dirname "$0")/.."

# sha256 of Debian's nginx_<version>.orig.tar.gz (as listed in the Checksums-Sha256 of the
# package's .dsc; 1.22.1: bookworm's nginx_1.22.1-9+deb12u3.dsc).
declare -A ORIG_SHA256=(
  [1.22.1]=9ebb333a9e82b952acd3e2b4aeb1d4ff6406f72491bab6cd9fe69f0dea737f31
)
MODULE_DIR=nginx-modules/aerocdn_age
SO=ngx_http_aerocdn_age_module.so

out=""
print_only=false
while (($#)); do
  case $1 in
    --out) out=${2:?--out needs a file}; shift ;;
    --print-path) print_only=true ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "nginx-module.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

die() { echo "nginx-module.sh: $*" >&2; exit 1; }

NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
[[ -x $NGINX ]] || die "no nginx at $NGINX (apt-get install nginx)"
info=$("$NGINX" -V 2>&1)
version=$(sed -n 's|^nginx version: nginx/\([0-9.]*\).*|\1|p' <<<"$info")
[[ -n $version ]] || die "cannot read the version from '$NGINX -V'"
conf_line=$(sed -n 's/^configure arguments: //p' <<<"$info")
# The arguments as nginx printed them (shell-quoted, e.g. --with-cc-opt='-g -O2'): xargs splits
# them as a shell would, without running anything.
mapfile -d '' nginx_args < <(printf '%s' "$conf_line" | xargs printf '%s\0')
args=()
compat=false
for a in "${nginx_args[@]}"; do
  case $a in
    --with-compat) compat=true; args+=("$a") ;;
    # Other dynamic modules (Debian: geoip, image_filter, perl, xslt, mail, stream) need their
    # own libraries to configure and change nothing in a --with-compat module's ABI.
    --with-*=dynamic|--add-module=*|--add-dynamic-module=*) ;;
    *) args+=("$a") ;;
  esac
done
$compat || die "$NGINX was built without --with-compat: a module built here would not load"

src_sha=$(cd "$MODULE_DIR" && find . -type f -print0 | LC_ALL=C sort -z \
  | xargs -0 sha256sum | sha256sum | cut -c1-16)
CACHE=${AEROCDN_CACHE:-$HOME/.cache/aerocdn}
dest=$CACHE/nginx-modules/$version-$src_sha
if $print_only; then
  echo "$dest/$SO"
  exit 0
fi

if [[ ! -f $dest/$SO ]]; then
  expected=${NGINX_ORIG_SHA256:-${ORIG_SHA256[$version]:-}}
  [[ -n $expected ]] || die "no sha256 known for nginx $version's orig tarball: check it against \
Debian's .dsc and set NGINX_ORIG_SHA256 (or pin it in $0)"
  tarball=$CACHE/nginx-src/nginx_$version.orig.tar.gz
  mkdir -p "$CACHE/nginx-src" "$CACHE/nginx-modules"
  if [[ ! -f $tarball ]] || [[ $(sha256sum <"$tarball" | cut -d' ' -f1) != "$expected" ]]; then
    pool=${DEBIAN_POOL:-http://deb.debian.org/debian/pool/main/n/nginx}
    echo "nginx-module.sh: downloading $pool/nginx_$version.orig.tar.gz" >&2
    curl -fsSL --retry 3 -o "$tarball.tmp" "$pool/nginx_$version.orig.tar.gz"
    got=$(sha256sum <"$tarball.tmp" | cut -d' ' -f1)
    if [[ $got != "$expected" ]]; then
      rm -f "$tarball.tmp"
      die "nginx_$version.orig.tar.gz has sha256 $got, expected $expected: refusing it"
    fi
    mv "$tarball.tmp" "$tarball"
  fi

  work=$(mktemp -d "${TMPDIR:-/tmp}/aerocdn-nginx-module.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  tar -xzf "$tarball" -C "$work"
  cp -r "$MODULE_DIR" "$work/aerocdn_age"
  echo "nginx-module.sh: building $SO for nginx $version (log: $work/build.log)" >&2
  if ! (cd "$work/nginx-$version" \
        && nice -n 10 ./configure "${args[@]}" --add-dynamic-module="$work/aerocdn_age" \
        && nice -n 10 make -j"$(nproc)" modules) >"$work/build.log" 2>&1; then
    tail -n 30 "$work/build.log" >&2
    die "build failed (configure needs libpcre2-dev zlib1g-dev libssl-dev gcc make)"
  fi
  built=$work/nginx-$version/objs/$SO
  # The module must load into this nginx and give $aerocdn_age, else it is not cached.
  cat >"$work/check.conf" <<EOF
load_module $built;
pid $work/nginx.pid;
events {}
http {
    access_log off;
    client_body_temp_path $work/t; proxy_temp_path $work/t; fastcgi_temp_path $work/t;
    uwsgi_temp_path $work/t; scgi_temp_path $work/t;
    server { listen 127.0.0.1:1; add_header Age \$aerocdn_age always; }
}
EOF
  "$NGINX" -t -q -e stderr -p "$work" -c "$work/check.conf" \
    || die "nginx $version does not accept the module it was just built for ($built)"
  tmpdest=$(mktemp -d "$CACHE/nginx-modules/.tmp.XXXXXX")
  cp "$built" "$tmpdest/$SO"
  chmod 755 "$tmpdest"
  chmod 644 "$tmpdest/$SO"
  rm -rf "$dest"
  mv "$tmpdest" "$dest"
fi

if [[ -n $out ]]; then
  cp "$dest/$SO" "$out"
fi
echo "$dest/$SO"
