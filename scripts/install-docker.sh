#!/usr/bin/env bash
# Make sure Debian's Docker engine (docker.io: dockerd + the 20.10 client), docker-compose
# (1.29) and debootstrap are installed; the Docker tests (controller/tests/docker/) start
# dockerd themselves, build their images from local bases and clean up after them.
# Prints what it did. Docker stays optional for users; only the tests need it.
set -euo pipefail

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
[ -x /usr/bin/docker ] || missing+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
# iptables and ip are what the tests use to restore the host's network state.
command -v iptables-save >/dev/null 2>&1 || missing+=(iptables)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)

if [ "${#missing[@]}" -eq 0 ]; then
  echo "docker: already installed ($(/usr/bin/docker --version); $(docker-compose --version 2>/dev/null | head -n 1))"
  exit 0
fi
# De-duplicate (docker.io may be listed twice).
mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "docker: installing ${pkgs[*]} with apt-get" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
# Debian's package starts the daemon where systemd runs; the tests start their own.
echo "docker: installed ${pkgs[*]} ($(/usr/bin/docker --version))"
