#!/usr/bin/env bash
# Run the whole test suite (what CI runs): static checks (ruff, mypy, the import contract) and
# pytest, with the real peers (Orthanc, the FHIR server, MLLP, Triton, Chromium) started by the
# tests on loopback, and the crash and fault tests.
#   scripts/test.sh --fast [ARGS]   the fast tier for every change: unit tests only (no peers,
#                                   no browser, nothing marked slow), on every core (xdist)
# As root the run happens in a private network namespace, so servers that bind every
# interface (Orthanc) are reachable from nowhere but this run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
if [ "$(id -u)" = 0 ] && [ -z "${KIOSK_TEST_NETNS:-}" ] && unshare -n true 2>/dev/null; then
  exec unshare -n env KIOSK_TEST_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
if [ "${1:-}" = "--fast" ]; then
  shift
  set -- -m "not (peers or slow or browser)" -n auto "$@"
fi
exec python -m pytest "$@"
