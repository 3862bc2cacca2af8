#!/usr/bin/env bash
# Run the kiosk image with a data volume and check it from outside:
#   1. /login answers (and how long the container took to get there: the start-up time);
#   2. `kiosk doctor` passes inside the container;
#   3. a real chest DICOM pushed with dcmtk's storescu to the container's listener gets a
#      verdict (read back through the JSON API, logged in as a user made for the check);
#   4. the data survives a container restart (the same screening, the same user, after stop+start).
#
#   scripts/smoke-image.sh [IMAGE]        # default localhost/kiosk:latest
# Environment: KIOSK_SMOKE_FILM (a chest DICOM; default ../shared/data/dicom/SIIM-CXR-...dcm),
#   KIOSK_SMOKE_WEB_PORT (18080), KIOSK_SMOKE_DICOM_PORT (11113). Writes build/smoke.json.
# Exit status 0 only when every check passed. Needs podman (or docker), curl and storescu.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${1:-localhost/kiosk:latest}
FILM=${KIOSK_SMOKE_FILM:-../shared/data/dicom/SIIM-CXR-no-pneumothorax.dcm}
WEB=${KIOSK_SMOKE_WEB_PORT:-18080}
DICOM=${KIOSK_SMOKE_DICOM_PORT:-11113}
NAME=kiosk-smoke-$$
VOLUME=kiosk-smoke-$$
PASSWORD=smoke-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
RESULT=build/smoke.json
# shellcheck source=scripts/container-engine.sh
. scripts/container-engine.sh
for tool in curl storescu python3; do
  command -v "$tool" >/dev/null || { echo "smoke-image: $tool is not installed" >&2; exit 1; }
done
[ -f "$FILM" ] || { echo "smoke-image: no film at $FILM" >&2; exit 1; }
mkdir -p build

say() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
cleanup() {
  "${ENGINE_CMD[@]}" rm -f "$NAME" >/dev/null 2>&1 || true
  "${ENGINE_CMD[@]}" volume rm -f "$VOLUME" >/dev/null 2>&1 || true
  rm -f build/smoke-cookies.txt
}
trap cleanup EXIT

start_container() {
  "${RUN_CMD[@]}" -d --name "$NAME" -v "$VOLUME:/data" \
    -p "127.0.0.1:$WEB:8080" -p "127.0.0.1:$DICOM:11112" \
    -e KIOSK_SECURE_COOKIES=0 -e KIOSK_DICOM_AE_TITLE=KIOSK "$IMAGE" >/dev/null
}

# Seconds until /login answers 200 (fails after 180 s, printing the container's log).
wait_for_login() {
  local start now
  start=$(date +%s.%N)
  for _ in $(seq 1 900); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$WEB/login")" = 200 ]; then
      now=$(date +%s.%N)
      python3 -c "print(round($now - $start, 2))"
      return 0
    fi
    sleep 0.2
  done
  "${ENGINE_CMD[@]}" logs "$NAME" >&2 || true
  echo "smoke-image: /login did not answer within 180 s" >&2
  return 1
}

# The first screening's verdict, through the JSON API (empty while there is none). The session
# cookie is kept in build/smoke-cookies.txt: the check logs in (Argon2, a second or so) only
# when the session is not valid, so the polling measures the kiosk, not the login.
verdict() {
  python3 - "$WEB" "$PASSWORD" build/smoke-cookies.txt <<'PY'
import http.cookiejar, json, re, sys, urllib.error, urllib.parse, urllib.request
port, password, jar_file = sys.argv[1], sys.argv[2], sys.argv[3]
base = f"http://127.0.0.1:{port}"
jar = http.cookiejar.MozillaCookieJar(jar_file)
try:
    jar.load(ignore_discard=True)
except OSError:
    pass
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

def log_in():
    form = opener.open(f"{base}/login", timeout=10).read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    body = urllib.parse.urlencode({"csrf_token": token, "next": "", "username": "smoke",
                                   "password": password}).encode()
    opener.open(f"{base}/login", data=body, timeout=10).read()
    jar.save(ignore_discard=True)

for attempt in (1, 2):
    try:
        screening = json.load(opener.open(f"{base}/api/screenings/1", timeout=10))
        break
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            sys.exit(0)
        if exc.code != 401 or attempt == 2:
            sys.exit(f"api: {exc.code} {exc.read()[:200]!r}")
        log_in()
print(json.dumps({"verdict": screening["verdict"], "task": screening["results"][0]["task"],
                  "patient": screening["patient"]["identifier"]}))
PY
}

cleanup
"${ENGINE_CMD[@]}" volume create "$VOLUME" >/dev/null
say "image $IMAGE ($ENGINE $(printf '%s ' "${ENGINE_CMD[@]:1}"))"
t0=$(date +%s.%N)
start_container
first_start=$(wait_for_login)
say "1. /login answers, ${first_start} s after the start"

doctor=$("${ENGINE_CMD[@]}" exec "$NAME" kiosk doctor) || { echo "$doctor" >&2; exit 1; }
say "2. kiosk doctor passes inside: $(echo "$doctor" | tail -1)"

printf '%s\n' "$PASSWORD" | "${ENGINE_CMD[@]}" exec -i "$NAME" kiosk user add --role admin smoke --password-stdin >/dev/null
rm -f build/smoke-cookies.txt
verdict >/dev/null  # logs in once, before the film is pushed
push=$(date +%s.%N)
# dcmtk's storescu, not pynetdicom's of the same name that a venv on PATH may put first
STORESCU=$( [ -x /usr/bin/storescu ] && echo /usr/bin/storescu || command -v storescu )
"$STORESCU" -xy -aet XRAY1 -aec KIOSK 127.0.0.1 "$DICOM" "$FILM"
answer=""
for _ in $(seq 1 300); do
  answer=$(verdict)
  [ -n "$answer" ] && break
  sleep 0.2
done
[ -n "$answer" ] || { "${ENGINE_CMD[@]}" logs "$NAME" >&2; echo "smoke-image: no verdict for the pushed film" >&2; exit 1; }
to_verdict=$(python3 -c "import time; print(round(time.time() - $push, 2))")
say "3. the pushed film got a verdict in ${to_verdict} s: $answer"

"${ENGINE_CMD[@]}" stop -t 30 "$NAME" >/dev/null
"${ENGINE_CMD[@]}" start "$NAME" >/dev/null
restart=$(wait_for_login)
again=$(verdict)
[ "$again" = "$answer" ] || { echo "smoke-image: after a restart: '$again', before: '$answer'" >&2; exit 1; }
say "4. after a restart (/login in ${restart} s) the screening and the user are still there"

size=$("${ENGINE_CMD[@]}" image inspect "$IMAGE" --format '{{.Size}}')
python3 - "$RESULT" <<PY
import json, sys
json.dump({"image": "$IMAGE", "engine": "$ENGINE", "size_mib": round($size / 2**20),
           "first_start_to_login_s": $first_start, "restart_to_login_s": $restart,
           "push_to_verdict_s": $to_verdict, "verdict": $answer,
           "total_s": round($(date +%s.%N) - $t0, 1)}, open(sys.argv[1], "w"), indent=1)
PY
say "all 4 checks passed; figures in $RESULT"
cat "$RESULT"
