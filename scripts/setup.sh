#!/usr/bin/env bash
# Installs what quicmesh's lab, tests and demo need on a Debian machine, as
# root: nftables, iproute2 (ip, ss), curl, iperf3, ethtool, HAProxy (the
# benchmark's reference L7 proxy), Python's aioquic (the independent HTTP/3
# client of the tests), grpcio (gRPC through the waypoint) and
# kubernetes-validate (the controller's Kubernetes manifests). Idempotent;
# quiet when all is there.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (it installs packages; the lab creates network namespaces)" >&2
  exit 1
fi

need=()
for pair in nft:nftables ip:iproute2 ss:iproute2 curl:curl iperf3:iperf3 ethtool:ethtool haproxy:haproxy; do
  cmd=${pair%%:*} pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup.sh: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import aioquic' 2>/dev/null; then
  echo "setup.sh: installing aioquic for $PY"
  "$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'aioquic==1.7.2' \
    || "$PY" -m pip install --quiet --disable-pip-version-check --break-system-packages 'aioquic==1.7.2'
fi

if ! "$PY" -c 'import grpc' 2>/dev/null; then
  echo "setup.sh: installing grpcio for $PY (the waypoint's gRPC tests)"
  "$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'grpcio==1.68.1' \
    || "$PY" -m pip install --quiet --disable-pip-version-check --break-system-packages 'grpcio==1.68.1'
fi

if ! "$PY" -c 'import kubernetes_validate' 2>/dev/null; then
  echo "setup.sh: installing kubernetes-validate for $PY (checks the manifests the controller applies)"
  "$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'kubernetes-validate==1.31.0' \
    || "$PY" -m pip install --quiet --disable-pip-version-check --break-system-packages 'kubernetes-validate==1.31.0'
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup.sh: cargo (Rust) is required and not on PATH" >&2
  exit 1
fi
