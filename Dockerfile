# syntax=docker/dockerfile:1
# The kiosk on a CPU (x86-64 or arm64): web app, DICOM listener and sync loop in one process.
#   docker build -t kiosk .
#   docker run -d --restart unless-stopped -v kiosk-data:/data \
#     -p 127.0.0.1:8080:8080 -p 11112:11112 kiosk
# Data (SQLite store, images, spool, keys) lives on the /data volume. See docs/deploy.md.
# The Jetson (L4T) image is Dockerfile.jetson.
#
# BASE_IMAGE chooses the Python the image runs on:
# - python:3.11-slim-bookworm (default): the official image, on a machine that reaches a registry;
# - a Debian bookworm root file system with Debian's own python3 (3.11), made locally where no
#   registry can be reached: scripts/build-image.sh builds it with mmdebstrap and passes
#   --build-arg BASE_IMAGE=localhost/kiosk-base:bookworm, plus the pinned wheels it downloaded
#   (mounted at /wheels, PIP_OPTIONS="--no-index --find-links /wheels").
# Both bases provide python3 with venv; tini and ca-certificates come from apt where the base
# lacks them (the local base already has them, so the build needs no network at all).

ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG PIP_OPTIONS=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kiosk ./kiosk
COPY engines ./engines
COPY hardware ./hardware
COPY web ./web
# the pinned runtime dependencies only: no torch, no test tools
RUN python3 -m venv /opt/kiosk/venv \
 && /opt/kiosk/venv/bin/pip install ${PIP_OPTIONS} --no-compile . \
 && /opt/kiosk/venv/bin/python -c "import kiosk, engines, hardware, web, waitress, onnxruntime, cv2"

FROM ${BASE_IMAGE} AS cpu
RUN if ! command -v tini >/dev/null || [ ! -d /etc/ssl/certs ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends tini ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin kiosk \
 && mkdir -p /data && chown kiosk:kiosk /data
COPY --from=build /opt/kiosk/venv /opt/kiosk/venv
COPY models /opt/kiosk/models
COPY docker/entrypoint.sh /usr/local/bin/kiosk-entrypoint
ENV PATH=/opt/kiosk/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    KIOSK_DATA_DIR=/data \
    KIOSK_MODELS_DIR=/opt/kiosk/models \
    KIOSK_TRUSTED_KEYS=/opt/kiosk/models/trusted_keys \
    KIOSK_ENGINE_CACHE_DIR=/data/engines \
    KIOSK_BACKENDS=onnxruntime-cpu \
    KIOSK_HOST=0.0.0.0 \
    KIOSK_DICOM_HOST=0.0.0.0
# 0.0.0.0 is the container's own network namespace: what is reachable from outside is decided
# by the -p/--publish flags (publish the web port on 127.0.0.1 or behind a TLS proxy).
USER kiosk
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080 11112
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["kiosk-entrypoint", "health"]
ENTRYPOINT ["tini", "--", "kiosk-entrypoint"]
CMD ["serve"]
