#!/usr/bin/env bash
# Make sure schemathesis (the API fuzzer the e2e test `openapi::fuzz...` runs against
# /openapi.json) is available, and print the path of its `schemathesis` command.
#
# Order of preference: $JETMILL_SCHEMATHESIS if set; .tools/schemathesis (installed by
# this script into a virtualenv from PyPI, no root needed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
want_version="4.32.5"
venv="$root/.tools/schemathesis"
bin="$venv/bin/schemathesis"

if [ -n "${JETMILL_SCHEMATHESIS:-}" ]; then
  "$JETMILL_SCHEMATHESIS" --version >/dev/null 2>&1 || { echo "JETMILL_SCHEMATHESIS=$JETMILL_SCHEMATHESIS does not run" >&2; exit 1; }
  echo "$JETMILL_SCHEMATHESIS"; exit 0
fi
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$want_version"; then
  echo "$bin"; exit 0
fi
echo "installing schemathesis $want_version into .tools/schemathesis (PyPI)" >&2
py="$(command -v python3 || command -v python || true)"
[ -n "$py" ] || { echo "python3 is needed to install schemathesis (or set JETMILL_SCHEMATHESIS)" >&2; exit 1; }
rm -rf "$venv"
"$py" -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$want_version" >&2
"$bin" --version >/dev/null || { echo "the installed schemathesis does not run: $bin" >&2; exit 1; }
echo "$bin"
