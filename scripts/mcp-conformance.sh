#!/usr/bin/env bash
# Runs every client scenario of the official MCP conformance suite
# (@modelcontextprotocol/conformance, two pinned versions: the latest release and the
# newest pre-release) against vtuber-mcp-conformance, the adapter around the daemon's own
# MCP client, and prints a table per version.
#
# A scenario passes only when it ran at least one check and none failed: the suite
# reports a client that does nothing as "0 passed, 0 failed". Scenarios known not to pass
# yet are listed, with the reason, in tests/mcp-conformance/expected-failures.txt; the run
# fails on any other failure and on a listed scenario that now passes (drop it from the
# list). Results (checks.json per scenario) are kept in target/mcp-conformance/.
#
#   mcp-conformance.sh                 install if needed, then run both versions
#   mcp-conformance.sh --install-only  only install the suites and Node 22 (setup.sh)
#   mcp-conformance.sh --suite 0.1     only one version (0.1 or 0.2)
#   mcp-conformance.sh --scenario X    only scenario X (of each version run)
#
# Needs npm (any version) to install; the suites run on the Node 22 that npm installs
# into tests/mcp-conformance/node_modules (the `node` package), since they need Node 22.
# The adapter is target/debug/vtuber-mcp-conformance (`cargo build --workspace --bins`),
# or $MCP_CONFORMANCE_ADAPTER.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/tests/mcp-conformance"

die() { echo "mcp-conformance.sh: $*" >&2; exit 1; }

install_only=false
versions=(0.1 0.2)
only_scenario=""
while [ $# -gt 0 ]; do
  case "$1" in
    --install-only) install_only=true ;;
    --suite) shift; [ $# -gt 0 ] || die "--suite needs 0.1 or 0.2"; versions=("$1") ;;
    --scenario) shift; [ $# -gt 0 ] || die "--scenario needs a name"; only_scenario="$1" ;;
    *) die "unknown option '$1' (expected --install-only, --suite V or --scenario NAME)" ;;
  esac
  shift
done

node="$dir/node_modules/.bin/node"

# Installed when every pinned package is there at its pinned version.
installed() {
  [ -x "$node" ] || return 1
  "$node" - "$dir" <<'JS' >/dev/null 2>&1
const fs = require("fs"), path = require("path");
const dir = process.argv[2];
const want = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")).dependencies;
for (const [name, spec] of Object.entries(want)) {
  const version = spec.startsWith("npm:") ? spec.slice(spec.lastIndexOf("@") + 1) : spec;
  const have = JSON.parse(fs.readFileSync(path.join(dir, "node_modules", name, "package.json"), "utf8")).version;
  if (have !== version) process.exit(1);
}
JS
}

if installed; then
  echo "present: tests/mcp-conformance/node_modules (conformance suites and Node $("$node" --version))"
else
  command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js and npm (Debian: apt-get install nodejs npm)"
  echo "installing the MCP conformance suites and Node 22 (npm ci in tests/mcp-conformance) ..."
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) \
    || die "npm ci in tests/mcp-conformance failed (is the npm registry reachable? see the npm message above)"
  installed || die "npm ci in tests/mcp-conformance did not install the pinned packages"
fi
$install_only && exit 0

adapter="${MCP_CONFORMANCE_ADAPTER:-${CARGO_TARGET_DIR:-$root/target}/debug/vtuber-mcp-conformance}"
[ -x "$adapter" ] || die "$adapter not found: build it first (cargo build --workspace --bins)"

out_root="${CARGO_TARGET_DIR:-$root/target}/mcp-conformance"
status=0
for v in "${versions[@]}"; do
  suite="$dir/node_modules/conformance-$v/dist/index.js"
  [ -f "$suite" ] || die "no conformance suite $v (expected 0.1 or 0.2)"
  out="$out_root/$v"
  rm -rf "$out"
  mkdir -p "$out"
  version="$("$node" -p 'require(process.argv[1]).version' "$dir/node_modules/conformance-$v/package.json")"
  # The scenario names, one per line, from `list --client`.
  "$node" "$suite" list --client | sed -n 's/^  - \([^ ]*\).*/\1/p' >"$out/scenarios.txt"
  if [ -n "$only_scenario" ]; then
    grep -qx -- "$only_scenario" "$out/scenarios.txt" || { echo "suite $version has no scenario $only_scenario"; continue; }
    echo "$only_scenario" >"$out/scenarios.txt"
  fi
  echo "== MCP conformance $version: $(wc -l <"$out/scenarios.txt") client scenarios =="
  # One scenario at a time, at most 4 at once: the suite's own `--suite all` starts
  # every scenario together, which starves a 2-core machine into timeouts.
  PATH="$(dirname "$node"):$PATH" xargs -P 4 -I{} sh -c \
    '"$1" "$2" client --command "$3" --scenario "$4" --timeout 30000 -o "$5" >"$5/$(echo "$4" | tr / _).log" 2>&1 || true' \
    _ "$node" "$suite" "$adapter" {} "$out" <"$out/scenarios.txt"
  "$node" "$dir/report.mjs" "$version" "$out" "$dir/expected-failures.txt" || status=1
done
exit $status
