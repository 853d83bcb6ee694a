#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and run vtuber, then the default
# models and web assets. Safe to re-run.
#
# The Debian packages come from scripts/debian-packages.txt, asked for by exact name
# (`dpkg-query`), never inferred from files on disk: a neighbour package's file (the
# image's libclang-cpp14 matched a libclang glob) must not stand in for the real one.
#   setup.sh               build + run packages, default models, web assets
#   setup.sh --for-tests   also the test packages, the multilingual Whisper model and
#                          the browser driver
#   setup.sh --print-missing [--for-tests]
#                          only print the packages that would be installed
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

for_tests=false
print_only=false
for arg in "$@"; do
  case "$arg" in
    --for-tests) for_tests=true ;;
    --print-missing) print_only=true ;;
    *) echo "setup.sh: unknown option '$arg' (expected --for-tests or --print-missing)" >&2; exit 2 ;;
  esac
done

# Packages wanted for this run, in list order.
wanted_packages() {
  local name when
  while read -r name when _; do
    case "$name" in ''|'#'*) continue ;; esac
    if [ "$when" = test ] && ! $for_tests; then continue; fi
    echo "$name"
  done <"$here/debian-packages.txt"
}

installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

need=()
while read -r pkg; do
  installed "$pkg" || need+=("$pkg")
done < <(wanted_packages)

if $print_only; then
  [ ${#need[@]} -eq 0 ] || printf '%s\n' "${need[@]}"
  exit 0
fi

if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "installing Debian packages: ${need[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
  for pkg in "${need[@]}"; do
    installed "$pkg" || { echo "setup.sh: apt-get did not install '$pkg'; install it by hand and re-run" >&2; exit 1; }
  done
fi

"$here/fetch-model.sh"
# The tests also check a multilingual Whisper model (optional for users).
if $for_tests; then
  "$here/fetch-model.sh" --only asr-base
fi

# The browser page's third-party assets (pixi.js, the Live2D runtime and model) from npm;
# for the tests also the Playwright driver (never a downloaded browser).
if $for_tests; then
  "$here/fetch-web-assets.sh"
else
  "$here/fetch-web-assets.sh" --assets-only
fi

# The official MCP conformance suites and the Node 22 they need, from npm, for the MCP
# client's conformance test (scripts/mcp-conformance.sh).
if $for_tests; then
  "$here/mcp-conformance.sh" --install-only
fi

# A real third-party MCP server from PyPI, used by the integration tests and handy as a
# first tool server (see conf.yaml's mcp section).
if ! python3 -c "import mcp_server_time" >/dev/null 2>&1; then
  echo "installing mcp-server-time (PyPI) ..."
  python3 -m pip install --quiet --disable-pip-version-check mcp-server-time
fi
