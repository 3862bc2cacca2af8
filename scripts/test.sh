#!/usr/bin/env bash
# Run the whole test suite: static checks (ruff, mypy) and pytest, with the real peers
# (Orthanc, the FHIR server, MLLP, Triton, Chromium) started by the tests on loopback.
# As root the run happens in a private network namespace, so servers that bind every
# interface (Orthanc) are reachable from nowhere but this run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
if [ "$(id -u)" = 0 ] && [ -z "${KIOSK_TEST_NETNS:-}" ] && unshare -n true 2>/dev/null; then
  exec unshare -n env KIOSK_TEST_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
exec python -m pytest "$@"
