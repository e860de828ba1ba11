#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, the docs, and every test against a
# real nats-server (installed by scripts/install-nats.sh if missing), the web page's
# tests in a real headless Chromium (installed by scripts/install-chromium.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export JETMILL_NATS_SERVER="$(scripts/install-nats.sh | tail -n 1)"
echo "using nats-server: $JETMILL_NATS_SERVER ($("$JETMILL_NATS_SERVER" --version))"
# The API fuzz test (controller/tests/e2e/openapi.rs) runs schemathesis from PyPI.
export JETMILL_SCHEMATHESIS="$(scripts/install-schemathesis.sh | tail -n 1)"
# Tests must not pick up an operator's settings.
for v in $(env | sed -n 's/^\(JETMILL_[A-Z_]*\)=.*/\1/p'); do
  [ "$v" = JETMILL_NATS_SERVER ] || [ "$v" = JETMILL_SCHEMATHESIS ] || [ "$v" = JETMILL_SKIP_DOCKER_TESTS ] || unset "$v"
done

# Debian's chromium + chromium-driver for controller/tests/e2e/web.rs. If they cannot be
# installed the suite still runs, and those tests fail saying what to install.
if ! scripts/install-chromium.sh >/dev/null; then
  echo "WARNING: could not install chromium/chromium-driver; the web page tests will fail" >&2
fi

# Debian's docker.io, docker-compose and debootstrap for controller/tests/docker/ (the
# tests start dockerd themselves and fail saying why if it cannot start;
# JETMILL_SKIP_DOCKER_TESTS=1 skips them).
scripts/install-docker.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Doc comments are the reference for the public items: broken links and stray HTML fail.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "cargo-nextest missing; installing it" >&2
  cargo install --locked cargo-nextest
fi
cargo nextest run --workspace --locked --no-fail-fast
