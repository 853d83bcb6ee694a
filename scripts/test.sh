#!/usr/bin/env bash
# Sets up what the tests need (build tools, the default model) and runs every test.
# The end-to-end tests run the real vtuberd and vtuber binaries, so those are built first.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh --for-tests
cargo build --workspace --bins
# The Debian package list must match what the build and the programs really use.
./scripts/check-packages.sh --for-tests
# Fuzzing, short form (issue 19): each target of fuzz/ for VTUBER_FUZZ_SECONDS (30 by
# default; 0 skips), on a full run only (not when arguments pick tests). Before the
# tests, so their summary stays the last thing printed.
fuzz_seconds="${VTUBER_FUZZ_SECONDS:-30}"
if [ $# -eq 0 ] && [ "$fuzz_seconds" != 0 ]; then
  ./scripts/fuzz.sh "$fuzz_seconds"
fi
# Soak, short form (issue 19): 2 minutes of 50 clients, turns, tool calls, barge-ins
# and churn (VTUBER_SOAK=0 skips), on a full run only.
if [ $# -eq 0 ] && [ "${VTUBER_SOAK:-1}" != 0 ]; then
  ./scripts/soak.sh --ci
fi
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
