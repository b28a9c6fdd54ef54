#!/usr/bin/env bash
# Runs the fuzz targets in fuzz/ (cargo-fuzz, libFuzzer, nightly Rust) for SECONDS each:
#
#   tools/fuzz.sh [SECONDS] [TARGET...]      (default: 60 seconds, every target)
#
# Targets: gguf, gguf_tokenizer, hf, chat_template, snapshot, cli_args (bodies in
# tests/fuzz_harness/). Each starts from seeds derived from the fixtures (written by
# tests/fuzz_regressions.rs) plus its regression corpus tests/fuzz_regressions/<target>/, runs in
# one process (one job, one core), and stops at the first crash, timeout (> 10 s for one input)
# or allocation over 2 GiB. Crashing inputs land in fuzz/artifacts/<target>/; minimise one with
# `cargo +nightly fuzz tmin <target> <file>`, copy it into tests/fuzz_regressions/<target>/ and
# fix it (tests/fuzz_regressions.rs then replays it in CI). Logs: fuzz/logs/<target>.log.
# FUZZ_SANITIZER=none skips AddressSanitizer (about twice the executions per second).
set -uo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(gguf gguf_tokenizer hf chat_template snapshot cli_args)
fi
sanitizer="${FUZZ_SANITIZER:-address}"

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal || exit 1
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || exit 1
fi

# Seeds from the fixtures (GGUF headers, config/tokenizer JSON, chat templates, a snapshot).
LFM_FUZZ_SEEDS="$PWD/fuzz/corpus" cargo test -q --test fuzz_regressions fixture_seeds >/dev/null ||
    { echo "tools/fuzz.sh: writing the seeds failed" >&2; exit 1; }
cargo +nightly fuzz build -O -a -s "$sanitizer" || exit 1

mkdir -p fuzz/logs
summary=()
status=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    dirs=("fuzz/corpus/$t")
    [ -d "tests/fuzz_regressions/$t" ] && dirs+=("tests/fuzz_regressions/$t")
    before=$(ls "fuzz/artifacts/$t" | wc -l)
    log="fuzz/logs/$t.log"
    echo "== $t: ${secs}s" >&2
    start=$(date +%s)
    extra=()
    # minijinja leaks a namespace that a template stores inside itself (an Arc cycle:
    # `{% set ns.x = (ns, 1) %}`); the leak is bounded by the render's fuel (chat::FUEL), so
    # leak reports are off for this target (crashes, hangs and OOMs are still reported).
    [ "$t" = chat_template ] && extra+=(-detect_leaks=0)
    cargo +nightly fuzz run -O -a -s "$sanitizer" "$t" "${dirs[@]}" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        ${extra[@]+"${extra[@]}"} >"$log" 2>&1
    rc=$?
    took=$(( $(date +%s) - start ))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    crashes=$(( $(ls "fuzz/artifacts/$t" | wc -l) - before ))
    [ "$rc" -ne 0 ] && status=1
    summary+=("$(printf '%-16s %6ss %12s execs  exit %-3s new artifacts %s' "$t" "$took" "${execs:-?}" "$rc" "$crashes")")
    if [ "$rc" -ne 0 ]; then
        grep -E '^(==[0-9]+==ERROR|SUMMARY|thread .* panicked|Test unit written|ERROR: libFuzzer)' "$log" >&2 || tail -20 "$log" >&2
    fi
done

echo
echo "target             time        executions  result"
printf '%s\n' "${summary[@]}"
exit "$status"
