# syntax=docker/dockerfile:1
#
# quicmesh's images: one build of the workspace, then one minimal runtime
# image per binary, each a target of this file. The Helm chart runs
# <image.registry>/<target>:<image.tag>, by default
# ghcr.io/quicmesh/<target>:<version> (the workspace version), so build and
# push them under those names:
#
#   docker build --target controller -t ghcr.io/quicmesh/controller:0.1.0 .
#   docker build --target ztunnel    -t ghcr.io/quicmesh/ztunnel:0.1.0 .
#   docker build --target waypoint   -t ghcr.io/quicmesh/waypoint:0.1.0 .
#   docker build --target cni        -t ghcr.io/quicmesh/cni:0.1.0 .
#   docker build --target quicmesh   -t ghcr.io/quicmesh/quicmesh:0.1.0 .
#
# tests/tests/helm.rs checks that the chart's images are these targets.
# See docs/install.md.

# The build: the workspace's `dist` profile (release + fat LTO), as the
# binaries are deployed. The images' glibc is the builder's (Debian 12).
# Cargo features (docs/ztunnel.md#build-options) go in CARGO_FEATURES,
# e.g. --build-arg CARGO_FEATURES=ztunnel/aws-lc-rs; none by default.
FROM rust:1.95-bookworm AS build
ARG CARGO_FEATURES=""
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --profile dist ${CARGO_FEATURES:+--features "$CARGO_FEATURES"} \
        -p quicmesh-controller -p ztunnel -p waypoint -p quicmesh-cni -p quicmesh-cli --bins \
 && mkdir -p /out \
 && cp target/dist/controller target/dist/ztunnel target/dist/waypoint target/dist/quicmesh-cni \
       target/dist/quicmesh /out/

# The controller: no shell, no package manager, non-root.
FROM gcr.io/distroless/cc-debian12:nonroot AS controller
COPY --from=build /out/controller /usr/local/bin/controller
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/controller"]

# ztunnel runs `nft` inside each pod's network namespace, so its image has
# nftables (and so a minimal Debian rather than distroless). It runs as
# root with NET_ADMIN and SYS_ADMIN only (the chart's security context).
FROM debian:bookworm-slim AS ztunnel
RUN apt-get update \
 && apt-get install -y --no-install-recommends nftables \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ztunnel /usr/local/bin/ztunnel
ENTRYPOINT ["/usr/local/bin/ztunnel"]

# The waypoint (the controller provisions its Deployments with this image,
# `--waypoint-image`): non-root, no capabilities.
FROM gcr.io/distroless/cc-debian12:nonroot AS waypoint
COPY --from=build /out/waypoint /usr/local/bin/waypoint
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/waypoint"]

# The CNI plugin and its node agent, one binary (docs/cni.md): the agent
# copies itself onto the host as the plugin, where the container runtime
# runs it.
FROM gcr.io/distroless/cc-debian12 AS cni
COPY --from=build /out/quicmesh-cni /usr/local/bin/quicmesh-cni
ENTRYPOINT ["/usr/local/bin/quicmesh-cni"]

# The command-line tool (config dumps, status).
FROM gcr.io/distroless/cc-debian12:nonroot AS quicmesh
COPY --from=build /out/quicmesh /usr/local/bin/quicmesh
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/quicmesh"]
