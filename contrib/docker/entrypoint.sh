#!/bin/sh
# The container's entrypoint: on the first start, what the quick start's setup would
# fetch into the data volume (speech models, the page's assets) and a self-signed TLS
# certificate when none is mounted; then the command (vtuberd).
#   VTUBER_FETCH=0   fetch nothing (models and assets provided in the volume)
set -eu
data="${VTUBER_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/vtuber}"
cert="${VTUBER_TLS_CERT:-$data/tls/cert.pem}"
key="${VTUBER_TLS_KEY:-$data/tls/key.pem}"

if [ ! -s "$cert" ] && [ ! -s "$key" ]; then
  echo "vtuber-entrypoint: no TLS certificate at $cert: making a self-signed one (browsers will warn)" >&2
  mkdir -p "$(dirname "$cert")" "$(dirname "$key")"
  (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -days 825 -subj "/CN=vtuberd" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$key" -out "$cert" 2>/dev/null)
fi

if [ "${VTUBER_FETCH:-1}" != 0 ]; then
  # The LLM is the Ollama service's, so only the speech models (ASR, TTS, VAD, the ONNX
  # runtime); files already there with the right checksum are kept.
  /opt/vtuber/scripts/fetch-model.sh --only asr --only tts --only vad --only onnxruntime \
    || echo "vtuber-entrypoint: fetching the speech models failed; vtuberd starts without them (text only)" >&2
  /opt/vtuber/scripts/fetch-web-assets.sh --assets-only --no-chromium \
    || echo "vtuber-entrypoint: fetching the page's assets failed; the avatar page shows its fallback" >&2
fi

exec "$@"
