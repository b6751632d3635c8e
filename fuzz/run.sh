#!/usr/bin/env bash
# Fuzzes braid's parsers with AFL++ through cargo-afl (README.md beside this script).
#   fuzz/run.sh [TARGET...]     every target (or those named), one after another
#   fuzz/run.sh seeds           rewrite the generated seeds (seeds/engine, seeds/probe)
#   fuzz/run.sh replay TARGET FILE...   run inputs (a crash) through a target without AFL
# Environment: EXECS (inputs per target, default 1000000), MAX_SECONDS (time bound per
# target, default 900), KEEP=1 keeps the corpora and findings in target/afl/out.
# Not run in CI: it takes minutes per target and wants a core to itself.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/afl}"
# The cryptography crates without coverage instrumentation (see rustc-wrapper.sh).
export RUSTC_WRAPPER="$here/rustc-wrapper.sh"
bin="$CARGO_TARGET_DIR/debug"
out="$CARGO_TARGET_DIR/out"
execs="${EXECS:-1000000}"
max_seconds="${MAX_SECONDS:-900}"
all=(config registry control uapi probe engine)

command -v cargo-afl >/dev/null || {
    echo "cargo-afl is missing: cargo install cargo-afl --locked && cargo afl config --build" >&2
    exit 2
}
(cd "$here" && cargo afl build --bins --quiet)

case "${1:-}" in
seeds)
    (cd "$here" && "$bin/seeds")
    exit 0
    ;;
replay)
    shift
    exec "$bin/replay" "$@"
    ;;
esac

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
# No core dumps to wait for, no CPU frequency to tune, no core to pin: the machine is
# shared, and nothing system-wide is changed.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
export AFL_NO_UI=1 AFL_QUIET=1
summary=()
failed=0
for t in "${targets[@]}"; do
    [ -d "$here/seeds/$t" ] || { echo "unknown target $t (known: ${all[*]})" >&2; exit 2; }
    rm -rf "${out:?}/$t"
    mkdir -p "$out/$t"
    echo "== $t: $execs inputs at most, $max_seconds s at most"
    cargo afl fuzz -i "$here/seeds/$t" -o "$out/$t" -E "$execs" -V "$max_seconds" -t 1000 \
        -- "$bin/$t" >"$out/$t.log" 2>&1 || {
        echo "afl-fuzz failed on $t; the end of its log:" >&2
        tail -20 "$out/$t.log" >&2
        failed=1
        continue
    }
    stats="$out/$t/default/fuzzer_stats"
    get() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
    crashes=$(get saved_crashes)
    line="$t: $(get execs_done) inputs in $(get run_time) s, $(get execs_per_sec) /s, corpus $(get corpus_count), edges $(get bitmap_cvg), crashes $crashes, hangs $(get saved_hangs)"
    echo "$line"
    summary+=("$line")
    if [ "$crashes" != 0 ]; then
        failed=1
        mkdir -p "$root/fuzz/crashes/$t"
        cp "$out/$t"/default/crashes/id* "$root/fuzz/crashes/$t/"
        echo "crashing inputs copied to fuzz/crashes/$t; reproduce: fuzz/run.sh replay $t FILE" >&2
    fi
    [ "${KEEP:-0}" = 1 ] || rm -rf "${out:?}/$t"
done
echo "== summary ($(date -u +%F), $(nproc) cores)"
printf '%s\n' "${summary[@]}"
exit $failed
