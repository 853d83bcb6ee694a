#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and run vtuber: the C toolchain
# pieces llama.cpp needs (cmake, libclang), the audio libraries (ALSA, WebRTC audio
# processing for echo cancellation), espeak-ng (phonemes for Piper, fallback voice), then
# the default models and web assets. Safe to re-run.
set -euo pipefail

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
[ -n "$(ls /usr/lib/llvm-*/lib/libclang*.so* 2>/dev/null | head -n1)" ] || need+=(libclang-dev clang)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists alsa 2>/dev/null || need+=(libasound2-dev)
pkg-config --exists webrtc-audio-processing 2>/dev/null || need+=(libwebrtc-audio-processing-dev)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
# `--for-tests`: sox (speech fixtures) and chromium (the real-browser test) as well.
for_tests=false
[ "${1:-}" = "--for-tests" ] && for_tests=true
if $for_tests; then
  command -v sox >/dev/null 2>&1 || need+=(sox)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
fi
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "installing: ${need[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi

"$(dirname "$0")/fetch-model.sh"
# The tests also check a multilingual Whisper model (optional for users).
if $for_tests; then
  "$(dirname "$0")/fetch-model.sh" --only asr-base
fi

# The browser page's third-party assets (pixi.js, the Live2D runtime and model) from npm;
# for the tests also the Playwright driver (never a downloaded browser).
if $for_tests; then
  "$(dirname "$0")/fetch-web-assets.sh"
else
  "$(dirname "$0")/fetch-web-assets.sh" --assets-only
fi

# A real third-party MCP server from PyPI, used by the integration tests and handy as a
# first tool server (see conf.yaml's mcp section).
if ! python3 -c "import mcp_server_time" >/dev/null 2>&1; then
  echo "installing mcp-server-time (PyPI) ..."
  python3 -m pip install --quiet --disable-pip-version-check mcp-server-time
fi
