# vtuberd in a container: `docker compose up` (compose.yaml) runs it next to an Ollama
# server. Two stages: the build (the Debian packages of scripts/debian-packages.txt marked
# `build`) and a slim runtime (their run-time libraries, espeak-ng, and what the first
# start needs to fetch the models and the page's assets into the data volume).
# Checked statically only (tui/tests/container_files.rs): no container engine runs on the
# development machines.

# rust-version in Cargo.toml is the floor; the default tracks the latest stable, as CI does.
ARG RUST_VERSION=1
FROM rust:${RUST_VERSION}-bookworm AS builder
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake libclang-dev pkg-config libasound2-dev libwebrtc-audio-processing-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p vtuberd -p vtuber --bins

# Node.js (npm) for scripts/fetch-web-assets.sh, which fetches the avatar page's assets
# from npm at first start: Debian's npm package would pull in hundreds of packages.
FROM node:22-bookworm-slim AS node

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libasound2 libwebrtc-audio-processing1 espeak-ng ca-certificates \
      openssl python3 python3-pip \
 && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm

COPY --from=builder /src/target/release/vtuberd /src/target/release/vtuber /usr/local/bin/
# The fetch scripts read daemon/models.manifest relative to themselves.
COPY scripts/fetch-model.sh scripts/fetch-web-assets.sh /opt/vtuber/scripts/
COPY daemon/models.manifest /opt/vtuber/daemon/models.manifest
COPY contrib/docker/conf.yaml /etc/vtuber/conf.yaml
COPY contrib/docker/entrypoint.sh /usr/local/bin/vtuber-entrypoint

RUN useradd --create-home --shell /usr/sbin/nologin vtuber \
 && mkdir -p /home/vtuber/.local/share/vtuber \
 && chown -R vtuber:vtuber /home/vtuber
USER vtuber
WORKDIR /home/vtuber
ENV VTUBER_CONFIG=/etc/vtuber/conf.yaml
# History, models, web assets, the web token and (unless mounted) the TLS certificate.
VOLUME ["/home/vtuber/.local/share/vtuber"]
EXPOSE 12393
# `vtuber status` asks the daemon on its local socket and exits non-zero (3) when none
# answers. The first start fetches models: give it time.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10m --retries=3 CMD ["vtuber", "status"]
ENTRYPOINT ["/usr/local/bin/vtuber-entrypoint"]
CMD ["vtuberd"]
