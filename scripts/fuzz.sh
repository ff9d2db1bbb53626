#!/usr/bin/env bash
# Fuzzes every parser of peer or user input (the cargo-fuzz targets in
# fuzz/) for a while each, and fails if any target finds a crash.
#
#   scripts/fuzz.sh                       every target, 30 s each
#   scripts/fuzz.sh --seconds 600 manifest  one target, 10 minutes
#   scripts/fuzz.sh --list                the targets
#   scripts/fuzz.sh --write-seeds         regenerate fuzz/corpus/<target>/
#
# Works on the stable toolchain: cargo-fuzz's nightly-only compiler flags
# are accepted with RUSTC_BOOTSTRAP=1, and targets are built without a
# sanitizer (quicmesh has no unsafe code in these parsers; what the
# fuzzer looks for is panics, failed assertions, overflows, hangs and
# memory blow-ups, which need none). A crash leaves its input in
# fuzz/artifacts/<target>/; replay it with
#   scripts/fuzz.sh --replay fuzz/artifacts/<target>/<file> <target>
#
# The committed seeds (fuzz/corpus/<target>/) are read, never written:
# what the fuzzer learns goes to $QUICMESH_FUZZ_CORPUS/<target>/ (default
# /var/tmp/quicmesh-fuzz-corpus), kept between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
seconds=30
mode=run
replay=
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --seconds=*) seconds=${1#*=}; shift ;;
        --list) mode=list; shift ;;
        --write-seeds) mode=seeds; shift ;;
        --replay) mode=replay; replay=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
case "$seconds" in
    ''|*[!0-9]*) echo "--seconds takes a whole number" >&2; exit 2 ;;
esac

if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install --locked --force cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${CARGO_FUZZ_TARGET_DIR:-/var/tmp/quicmesh-fuzz-target}
export CARGO_TERM_COLOR=never
corpus_root=${QUICMESH_FUZZ_CORPUS:-/var/tmp/quicmesh-fuzz-corpus}
# 16 codegen units: a much faster build of the whole dependency tree on two
# cores, for slightly slower fuzzing.
build_flags=(--sanitizer none --codegen-units 16 --target-dir "$CARGO_TARGET_DIR")

all=$(cargo fuzz list --fuzz-dir fuzz)
if [ "$mode" = list ]; then
    echo "$all"
    exit 0
fi
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets <<<"$all"
fi
for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$all" || { echo "no fuzz target $t (see --list)" >&2; exit 2; }
done

echo "== building ${targets[*]}"
cargo fuzz build --fuzz-dir fuzz "${build_flags[@]}"
bin_dir=$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release

if [ "$mode" = seeds ]; then
    for t in "${targets[@]}"; do
        QUICMESH_FUZZ_WRITE_SEEDS=fuzz/corpus "$bin_dir/$t" -runs=0
    done
    exit 0
fi
if [ "$mode" = replay ]; then
    [ ${#targets[@]} -eq 1 ] || { echo "--replay takes one target" >&2; exit 2; }
    exec "$bin_dir/${targets[0]}" "$replay"
fi

failed=()
summary=()
for t in "${targets[@]}"; do
    work=$corpus_root/$t
    mkdir -p "$work" "fuzz/artifacts/$t"
    log=$(mktemp)
    echo "== fuzzing $t for ${seconds}s"
    set +e
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: a
    # parser that lets an input blow memory up is a finding too.
    "$bin_dir/$t" "$work" "fuzz/corpus/$t" \
        -artifact_prefix="fuzz/artifacts/$t/" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 2>&1 | tee "$log" | grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|==|SUMMARY|.*panicked|Test unit written)' | tail -n 20
    status=${PIPESTATUS[0]}
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")
    units=$(find "$work" -type f | wc -l)
    seeds=$(find "fuzz/corpus/$t" -type f | wc -l)
    line="$t: ${seconds}s, ${runs:-?} executions (${rate:-?}/s), corpus $units (+$seeds seeds), peak RSS ${rss:-?} MB"
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        line="$line: FAILED (exit $status; input in fuzz/artifacts/$t/)"
    fi
    summary+=("$line")
    rm -f "$log"
done

echo "== summary"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}"
    exit 1
fi
echo "fuzz: ${#targets[@]} targets ran clean"
