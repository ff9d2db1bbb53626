#!/usr/bin/env bash
# Runs quicmesh's benchmark on the lab (real network namespaces, a real
# ztunnel per node): direct vs mesh L4 throughput, latency, connection churn,
# ztunnel CPU and memory, cold start, lossy link; and the L7 rows (HTTP/1.1
# and HTTP/2 through the waypoint, plain and with a JWT check and L7
# policies, vs HAProxy vs the L4 mesh, on a cluster run by the real
# controller). Run as root on Debian.
#
#   ./scripts/bench.sh            # full: 3 runs, L4 then L7 (~8 minutes)
#   ./scripts/bench.sh --l7       # the L7 rows only, 3 runs (~3 minutes)
#   ./scripts/bench.sh --no-l7    # the full L4 run without the L7 rows (~5 minutes)
#   ./scripts/bench.sh --quick    # 3 runs of shorter L4 loads (~2 minutes)
#   ./scripts/bench.sh --smoke    # seconds: mesh L4 only, one run (CI)
#   ./scripts/bench.sh --runs 5   # more runs
#
# Prints the markdown tables on stdout, progress on stderr, and writes the
# JSON to bench/results/<mode>-<date>.json (--out-dir DIR to change).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/root.sh
. scripts/root.sh
as_root "$PWD/scripts/bench.sh" "$@"

scripts/setup.sh >&2
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/quicmesh-target}
export CARGO_TERM_COLOR=never
# The `dist` profile (release + whole-program LTO) is what a deployment
# runs; the first build takes a few minutes longer than `--release`.
echo "bench.sh: building (profile dist) into $CARGO_TARGET_DIR" >&2
# The lab runs the ztunnel, controller, waypoint and quicmesh-cni binaries found beside
# quicmesh-bench, so all of them come from the same build.
cargo build --profile dist --locked --bins -p ztunnel -p quicmesh-controller -p waypoint -p quicmesh-cni -p quicmesh-bench >&2
exec "$CARGO_TARGET_DIR/dist/quicmesh-bench" "$@"
