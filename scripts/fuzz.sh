#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 30) and prints, per target, the executions,
# crashes and hangs; exits non-zero when any target crashed or hung.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Builds the `fuzz/` crate with libFuzzer's coverage instrumentation on stable Rust
# (the flags `cargo fuzz build --sanitizer none` passes; no nightly, no cargo-fuzz
# install), in fuzz/target. The committed seeds in fuzz/corpus/TARGET are read, never
# written: new inputs go to a scratch corpus. A crashing input is kept in
# fuzz/artifacts/TARGET/ (ignored by git) and its path is printed.
# The daemon's own parsers are property tests in its unit tests; with
# FUZZ_PROPTESTS=1 this also runs them for about SECONDS in all (PROPTEST_CASES scaled).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-30}"
shift || true
case "$seconds" in
  ''|*[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(frame_decoder request json_chunks)
fi

host="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR="$PWD/target"
build_start=$(date +%s)
# --target keeps the instrumentation off build scripts and proc macros.
cargo build --release --locked --target "$host" --bins
echo "fuzz build: $(( $(date +%s) - build_start )) s"

failed=0
printf '%-16s %12s %8s %8s %6s\n' target executions exec/s crashes hangs
for t in "${targets[@]}"; do
  bin="target/$host/release/$t"
  scratch="$(mktemp -d)"
  mkdir -p "artifacts/$t" "corpus/$t"
  log="$scratch/log"
  set +e
  # -timeout: one input running longer than 10 s is a hang; -rss_limit_mb bounds memory.
  "$bin" "$scratch" "corpus/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  crashes=0
  hangs=0
  if grep -q 'ERROR: libFuzzer: timeout' "$log"; then hangs=1; fi
  if [ "$rc" -ne 0 ] && [ "$hangs" -eq 0 ]; then crashes=1; fi
  printf '%-16s %12s %8s %8s %6s\n' "$t" "${execs:-?}" "${rate:-?}" "$crashes" "$hangs"
  if [ "$rc" -ne 0 ]; then
    failed=1
    echo "--- $t failed (exit $rc); the end of its log:" >&2
    tail -n 40 "$log" >&2
  fi
  rm -rf "$scratch"
done

if [ "${FUZZ_PROPTESTS:-0}" = 1 ]; then
  # 50,000 cases of each of the daemon's property tests take about 80 s in all on one
  # core, so this runs them for about SECONDS together.
  cases=$(( seconds * 600 ))
  echo "daemon property tests: PROPTEST_CASES=$cases"
  # Without the instrumentation flags and target folder above: the workspace's own build.
  (cd .. && env -u RUSTFLAGS -u CARGO_TARGET_DIR PROPTEST_CASES="$cases" \
    cargo test -p vtuberd --lib fuzz_props) || failed=1
fi
exit "$failed"
