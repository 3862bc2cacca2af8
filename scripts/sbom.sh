#!/usr/bin/env bash
# Write the CycloneDX software bill of materials of the kiosk to docs/sbom.cdx.json.
# It lists every package installed in .venv (the pinned dependencies of pyproject.toml and what
# they pull in), so run it after scripts/setup.sh and commit the result with any pin change.
#   scripts/sbom.sh            regenerate docs/sbom.cdx.json
#   scripts/sbom.sh OUT.json   write elsewhere (the test suite does this to compare)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/sbom.cdx.json}
# A fixed timestamp keeps the file reproducible: the date of the last commit touching the pins.
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct -- pyproject.toml 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH
.venv/bin/cyclonedx-py environment .venv \
  --pyproject pyproject.toml --mc-type application \
  --spec-version 1.6 --output-format JSON --output-reproducible \
  --output-file "$out"
echo "wrote $out ($(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["components"]))' "$out") components)"
