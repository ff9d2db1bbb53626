#!/usr/bin/env bash
# Runs every check and test of quicmesh: formatting, clippy, unit and
# property tests, and the end-to-end tests on real network namespaces.
# Run on Debian as root, or as a user with sudo (it re-runs itself through
# sudo); installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/root.sh
. scripts/root.sh
as_root "$PWD/scripts/test.sh" "$@"

scripts/setup.sh
# A build directory outside the clone is reused between runs.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/quicmesh-target}
export CARGO_TERM_COLOR=never

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The fuzz targets are their own workspace (scripts/fuzz.sh runs them);
# checked here so that they keep compiling as the code they feed changes.
echo "== cargo check (fuzz targets)"
cargo check --manifest-path fuzz/Cargo.toml --bins --locked
echo "== build (release: the e2e tests run the real ztunnel binary)"
cargo build --release --workspace --bins --locked
echo "== tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --release --workspace --locked --lib --bins --tests 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over all test binaries.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
