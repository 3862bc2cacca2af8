#!/usr/bin/env bash
# Container entry point: check the persistent data volume, then run a kiosk verb.
#   (no arguments)        kiosk serve: web app, DICOM listener and sync loop
#   serve|doctor|user|... that kiosk verb with its arguments
#   health                exit 0 while the web app answers (used by HEALTHCHECK)
#   anything else         run it as a command (e.g. bash)
set -euo pipefail

: "${KIOSK_DATA_DIR:=/data}"
export KIOSK_DATA_DIR

if [ $# -eq 0 ]; then
  set -- serve
fi

case "$1" in
  health)
    exec python - <<'PY'
import os, sys, urllib.error, urllib.request
url = "http://127.0.0.1:%s/api/health" % os.environ.get("KIOSK_PORT", "8080")
try:
    urllib.request.urlopen(url, timeout=5)
except urllib.error.HTTPError as exc:  # answering at all means alive; 5xx means broken
    sys.exit(1 if exc.code >= 500 else 0)
except OSError:
    sys.exit(1)
PY
    ;;
  serve|doctor|screen|sync|config|user|backup|models)
    mkdir -p "$KIOSK_DATA_DIR" 2>/dev/null || true
    if [ ! -w "$KIOSK_DATA_DIR" ]; then
      echo "entrypoint: $KIOSK_DATA_DIR is not writable by uid $(id -u):" \
           "give the volume to that user (chown -R $(id -u) on the host folder)" >&2
      exit 1
    fi
    if [ "$1" = serve ]; then
      # report problems in the log, but start anyway: the kiosk works offline and degraded
      kiosk doctor --quick || echo "entrypoint: kiosk doctor reported problems (see above)" >&2
    fi
    exec kiosk "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
