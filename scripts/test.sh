#!/usr/bin/env bash
# Runs every check and test of quicmesh: formatting, clippy, unit and
# property tests, and the end-to-end tests on real network namespaces.
# Run as root on Debian; installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# A build directory outside the clone is reused between runs.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/quicmesh-target}
export CARGO_TERM_COLOR=never

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== build (release: the e2e tests run the real ztunnel binary)"
cargo build --release --workspace --bins --locked
echo "== tests"
cargo test --release --workspace --locked
