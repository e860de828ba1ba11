#!/usr/bin/env bash
# Benchmark jetmill's compute kernels against GMP (gmpy2) in one run.
#
# Installs gmpy2 from PyPI if python3 cannot import it, then runs
# `cargo bench -p jetmill-compute --bench kernels`, which prints a table of
# jetmill vs GMP times and ratios (see docs/benchmarks.md).
#
#   scripts/bench-kernels.sh            # factorial(10^6), fibonacci(10^7), naive loop
#   JETMILL_BENCH_1E7=1 scripts/bench-kernels.sh   # also factorial(10^7) (~1 min)
#   JETMILL_BENCH_REPS=5 scripts/bench-kernels.sh  # best of 5 instead of 3
#
# CARGO_TARGET_DIR is honoured (e.g. /work/target-compute on the shared box).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v python3 >/dev/null; then
    echo "bench-kernels: python3 is required for the GMP baseline" >&2
    exit 1
fi
if ! python3 -c 'import gmpy2' 2>/dev/null; then
    echo "bench-kernels: installing gmpy2 (GMP for Python) from PyPI" >&2
    python3 -m pip install --quiet gmpy2 \
        || python3 -m pip install --quiet --user gmpy2 \
        || python3 -m pip install --quiet --break-system-packages gmpy2
fi
python3 -c 'import gmpy2; print("gmpy2", gmpy2.version(), "GMP", gmpy2.mp_version())'

exec cargo bench -p jetmill-compute --bench kernels
