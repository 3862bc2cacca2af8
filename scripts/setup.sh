#!/usr/bin/env bash
# Set up the kiosk on a fresh Debian/Ubuntu machine: system packages (when run as root),
# a Python virtual environment with pinned dependencies, and the test peers' npm packages.
#   scripts/setup.sh          the kiosk and everything its test suite needs
#   scripts/setup.sh --run    the same, then start the kiosk on its embedded defaults
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  # fonts-noto-core: the referral slip prints Vietnamese, Devanagari and Ethiopic names;
  # poppler-utils: the slip tests read the PDF back (pdftotext, pdffonts)
  pkgs=(orthanc orthanc-dicomweb dcmtk dicom3tools chromium fonts-dejavu-core fonts-noto-core
        poppler-utils iproute2 util-linux)
  command -v node >/dev/null || pkgs+=(nodejs npm)
  need=()
  for pkg in "${pkgs[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need[@]}"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[dev,export]"

# The Triton test peer needs nvidia-pytriton, whose pins clash with the kiosk's numpy; it gets its
# own environment built from Debian's Python (its Python backend stub links that libpython).
if [ -x /usr/bin/python3.11 ] && [ ! -x .venv-triton/bin/python ] && [ -f tests/peers/triton-requirements.txt ]; then
  /usr/bin/python3.11 -m venv .venv-triton
  .venv-triton/bin/pip install -q -r tests/peers/triton-requirements.txt || echo "warning: Triton peer not installed"
fi

for peer in tests/peers/*/package.json; do
  [ -f "$peer" ] || continue
  (cd "$(dirname "$peer")" && npm ci --silent --no-audit --no-fund)
done

if [ "${1:-}" = "--run" ]; then
  exec .venv/bin/kiosk serve
fi
