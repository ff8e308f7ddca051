# One image for the operator (`aerocdn run`) and the edges (`aerocdn edge` + nginx).
# Build: scripts/image.sh (buildah; BASE_IMAGE is a local Debian bookworm made by debootstrap),
# or anywhere with: docker build -t aerocdn:0.1.0 .
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

# --- build: a virtualenv with aerocdn and its dependencies from PyPI ------------------------
FROM ${BASE_IMAGE} AS build
ARG PIP_INDEX_URL
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/aerocdn
COPY pyproject.toml README.md /src/
COPY operator /src/operator
# An optional build secret `ca` (a CA bundle) is trusted for PyPI, for builds behind a
# TLS-inspecting proxy; it is mounted for this step only and never stored in the image.
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && /opt/aerocdn/bin/pip install --no-compile /src \
 && /opt/aerocdn/bin/python -m pip uninstall -q -y pip setuptools wheel \
 && /opt/aerocdn/bin/aerocdn --help >/dev/null \
 && find /opt/aerocdn -name __pycache__ -prune -exec rm -rf {} +
# No .pyc files in the venv: they would double its size (the kubernetes client alone is 74 MB
# of .py); compiling at start costs well under a second (measured: 1.0 s -> 1.7 s to import
# the operator), and the read-only root filesystem keeps nothing anyway.

# --- nginx-module: aerocdn's nginx module ($aerocdn_age), built for the runtime's nginx -------
# scripts/nginx-module.sh reads nginx -V of this stage's nginx-light (the runtime's package),
# fetches Debian's orig tarball of that version (sha256 checked) and builds the dynamic module.
FROM ${BASE_IMAGE} AS nginx-module
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx-light gcc make libc6-dev libpcre2-dev \
      zlib1g-dev libssl-dev curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY scripts/nginx-module.sh /src/scripts/
COPY nginx-modules /src/nginx-modules
RUN AEROCDN_CACHE=/tmp/aerocdn-cache /src/scripts/nginx-module.sh \
      --out /ngx_http_aerocdn_age_module.so

# --- runtime: python3, nginx (light) + the cache-purge module from Debian + ours, the venv ---
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# tini is PID 1 of every container of this image (the operator, nginx and `aerocdn edge`): it
# forwards SIGTERM to the program from its first instant and reaps zombies. Without it the
# program is PID 1, and the kernel drops every signal PID 1 has no handler for: a pod deleted
# while Python still imports was killed only at the end of its grace period.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 nginx-light libnginx-mod-http-cache-purge \
      ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log \
      /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/* \
 && rm -f /etc/nginx/sites-enabled/default \
 && groupadd --gid 10001 aerocdn \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin aerocdn
COPY --from=build /opt/aerocdn /opt/aerocdn
COPY --from=nginx-module /ngx_http_aerocdn_age_module.so /usr/lib/nginx/modules/
ENV PATH=/opt/aerocdn/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# uid 10001 matches runAsUser of the chart's operator pod and of the rendered edge pods.
USER 10001:10001
WORKDIR /tmp
# Pod specs give the program as `args` (not `command`, which would replace tini).
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["aerocdn", "--help"]
LABEL org.opencontainers.image.title="aerocdn" \
      org.opencontainers.image.description="aerocdn operator and edge (nginx + aerocdn edge)" \
      org.opencontainers.image.licenses="Apache-2.0"
