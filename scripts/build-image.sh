#!/usr/bin/env bash
# Build the kiosk's CPU image from ./Dockerfile.
#
#   scripts/build-image.sh                 # local base: no container registry needed
#   scripts/build-image.sh --official      # FROM python:3.11-slim-bookworm (a connected machine)
#   scripts/build-image.sh --git HEAD      # build what is committed, not the working tree
#
# With the local base (the default), everything comes from Debian's and PyPI's own mirrors:
#   1. mmdebstrap makes a bookworm root file system with Debian's python3 (3.11), python3-venv,
#      tini and ca-certificates, imported as localhost/kiosk-base:bookworm;
#   2. pip downloads the pinned wheels into build/wheels (for this machine's architecture);
#   3. podman (or buildah) builds the Dockerfile with --build-arg BASE_IMAGE=that base and the
#      wheels mounted read-only, so the build itself needs no network.
# Prints the image name, its size and the time each step took. Environment:
#   KIOSK_IMAGE (default localhost/kiosk:latest), KIOSK_BASE_IMAGE (localhost/kiosk-base:bookworm),
#   DEBIAN_MIRROR (http://deb.debian.org/debian), PYTHON (python3: downloads the wheels; must be
#   the base's Python version, 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${KIOSK_IMAGE:-localhost/kiosk:latest}
BASE=${KIOSK_BASE_IMAGE:-localhost/kiosk-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PYTHON=${PYTHON:-python3}
BUILD=build
official=0
git_rev=""
while [ $# -gt 0 ]; do
  case "$1" in
    --official) official=1 ;;
    --git) git_rev=$2; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "build-image: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

# shellcheck source=scripts/container-engine.sh
. scripts/container-engine.sh
mkdir -p "$BUILD"
step() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

context=.
if [ -n "$git_rev" ]; then
  context=$BUILD/context
  rm -rf "$context" && mkdir -p "$context"
  git archive "$git_rev" | tar -x -C "$context"
  step "context: git archive $git_rev ($(git rev-parse --short "$git_rev"))"
fi

if [ "$official" = 1 ]; then
  step "building $IMAGE FROM python:3.11-slim-bookworm with $ENGINE"
  start=$(date +%s)
  "${BUILDER[@]}" -t "$IMAGE" -f Dockerfile "$context"
  step "image built in $(( $(date +%s) - start )) s"
else
  if ! "${ENGINE_CMD[@]}" image exists "$BASE" 2>/dev/null; then
    command -v mmdebstrap >/dev/null || { echo "build-image: apt-get install mmdebstrap" >&2; exit 1; }
    step "base: mmdebstrap bookworm (Debian python3, python3-venv, tini, ca-certificates) -> $BASE"
    start=$(date +%s)
    mmdebstrap --variant=minbase \
      --include=python3,python3-venv,python-is-python3,tini,ca-certificates \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' \
      --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
      bookworm "$BUILD/base.tar" "$MIRROR"
    "${ENGINE_CMD[@]}" import "$BUILD/base.tar" "$BASE" >/dev/null
    rm -f "$BUILD/base.tar"
    step "base built in $(( $(date +%s) - start )) s"
  fi
  base_python=$("${RUN_CMD[@]}" --rm "$BASE" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  here_python=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  if [ "$base_python" != "$here_python" ]; then
    echo "build-image: the base has Python $base_python; set PYTHON to a $base_python interpreter" >&2
    exit 1
  fi
  step "wheels: the pinned runtime dependencies for Python $base_python -> $BUILD/wheels"
  start=$(date +%s)
  "$PYTHON" deploy/requirements-jetson.py --with-onnxruntime > "$BUILD/requirements.txt"
  "$PYTHON" -m pip download -q --only-binary=:all: -d "$BUILD/wheels" \
    -r "$BUILD/requirements.txt" "setuptools>=68" wheel
  step "wheels ready in $(( $(date +%s) - start )) s ($(du -sh "$BUILD/wheels" | cut -f1))"
  step "building $IMAGE FROM $BASE with $ENGINE"
  start=$(date +%s)
  "${BUILDER[@]}" -t "$IMAGE" -f Dockerfile \
    --build-arg BASE_IMAGE="$BASE" \
    --build-arg PIP_OPTIONS="--no-index --find-links /wheels" \
    -v "$PWD/$BUILD/wheels:/wheels:ro" \
    "$context"
  step "image built in $(( $(date +%s) - start )) s"
fi
size=$("${ENGINE_CMD[@]}" image inspect "$IMAGE" --format '{{.Size}}')
echo "$IMAGE: $(( size / 1024 / 1024 )) MiB"
