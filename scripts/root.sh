# Sourced by the scripts that need root (network namespaces, nftables,
# packages): `as_root "$0" "$@"` returns at once for root, re-runs the
# script through sudo for a user who has it (keeping the user's Rust
# toolchain, PATH, build directory and KUBECONFIG), and otherwise stops with what to do.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        return 0
    fi
    local script=$1
    shift
    local name
    name=$(basename "$script")
    if command -v sudo >/dev/null 2>&1; then
        echo "$name: needs root (network namespaces, nftables, packages); running it through sudo" >&2
        exec sudo env \
            "PATH=$PATH" \
            "CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}" \
            "RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}" \
            "CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/quicmesh-target}" \
            ${CI:+"CI=$CI"} \
            ${KUBECONFIG:+"KUBECONFIG=$KUBECONFIG"} \
            "$script" "$@"
    fi
    echo "$name: needs root (network namespaces, nftables, packages) and there is no sudo here: run it as root" >&2
    exit 1
}
