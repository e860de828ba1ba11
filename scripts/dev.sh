#!/usr/bin/env bash
# Quick start: install what is missing, build, and run jetmill on this machine
# (nats-server + gateway + worker). Extra arguments go to `jetmill dev`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export JETMILL_NATS_SERVER="$(scripts/install-nats.sh | tail -n 1)"
command -v cargo >/dev/null || { echo "cargo is missing: install Rust (https://rustup.rs) first" >&2; exit 1; }
cargo build --release -p jetmill
exec target/release/jetmill dev "$@"
