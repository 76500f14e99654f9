#!/usr/bin/env bash
# Installs what the browser tests need: Debian's Chromium, poppler-utils
# (pdftotext, to read back the evidence report printed to PDF) and the test
# driver's npm dependencies (playwright-core only; it never downloads a
# browser of its own). Idempotent: does nothing when all are present.
set -euo pipefail
cd "$(dirname "$0")/.."

NEED=()
[ -x /usr/bin/chromium ] || NEED+=(chromium)
[ -x /usr/bin/pdftotext ] || NEED+=(poppler-utils)
if [ ${#NEED[@]} -gt 0 ]; then
  echo "==> installing ${NEED[*]} from Debian"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  # Refresh the package lists only when apt does not know a package yet.
  if ! apt-cache show "${NEED[@]}" >/dev/null 2>&1 \
    || ! $SUDO apt-get install -y --no-install-recommends "${NEED[@]}"; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends "${NEED[@]}"
  fi
fi

if [ ! -d tests/browser/node_modules ]; then
  echo "==> installing the browser test driver's npm dependencies"
  # playwright-core has no install hook that fetches browsers; keep it that way.
  export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
  (cd tests/browser && npm ci --no-audit --no-fund --prefer-offline)
fi
