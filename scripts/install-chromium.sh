#!/usr/bin/env bash
# Make sure Debian's headless-capable Chromium and its WebDriver (chromedriver) are
# installed; the browser test (controller/tests/e2e/web.rs) drives them. Browsers
# cannot be downloaded by test tools here, so this uses the distribution packages.
# Prints the two binaries' paths on the last two lines.
set -euo pipefail

find_bins() {
  chromium_bin="$(command -v chromium || command -v chromium-browser || true)"
  driver_bin="$(command -v chromedriver || true)"
  [ -n "$chromium_bin" ] && [ -n "$driver_bin" ]
}

if ! find_bins; then
  echo "chromium/chromedriver missing; installing Debian's chromium and chromium-driver" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
  find_bins || { echo "chromium or chromedriver still missing after apt-get install" >&2; exit 1; }
fi
echo "$chromium_bin"
echo "$driver_bin"
