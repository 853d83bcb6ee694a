#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and run vtuber: the C toolchain
# pieces llama.cpp needs (cmake, libclang), then the default model. Safe to re-run.
set -euo pipefail

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
[ -n "$(ls /usr/lib/llvm-*/lib/libclang*.so* 2>/dev/null | head -n1)" ] || need+=(libclang-dev clang)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "installing: ${need[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi

"$(dirname "$0")/fetch-model.sh"

# A real third-party MCP server from PyPI, used by the integration tests and handy as a
# first tool server (see conf.yaml's mcp section).
if ! python3 -c "import mcp_server_time" >/dev/null 2>&1; then
  echo "installing mcp-server-time (PyPI) ..."
  python3 -m pip install --quiet --disable-pip-version-check mcp-server-time
fi
