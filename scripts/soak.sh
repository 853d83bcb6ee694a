#!/usr/bin/env bash
# Drives one daemon for a long while with many clients and prints, every few minutes,
# its RSS, open descriptors, threads, p50/p99 turn latency and events lost (issue 19).
#
#   scripts/soak.sh            an hour, 50 clients, a report every 5 minutes
#   scripts/soak.sh --ci       the 2-minute form CI runs (a report every 20 s)
#   scripts/soak.sh MINUTES [REPORT_SECS [CLIENTS]]
#
# Exits non-zero when an event was lost, a listener was dropped, a turn failed, or RSS or
# descriptors grew. Uses the binaries of the dev profile (`cargo build --workspace
# --bins`, which scripts/test.sh runs); PROFILE=release for release ones.
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${PROFILE:-debug}"
if [ "${1:-}" = "--ci" ]; then
  set -- 2 20 50
fi
if [ "$profile" = release ]; then
  cargo build --release --workspace --bins
else
  cargo build --workspace --bins
fi
exec "target/$profile/vtuber-bench" soak "${1:-60}" "${2:-300}" "${3:-50}"
