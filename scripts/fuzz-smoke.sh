#!/usr/bin/env bash
# Bounded smoke run of every fuzz target (fuzz/fuzz_targets/): builds them all once with
# cargo-fuzz (nightly, libFuzzer, no sanitizer: the parsers are safe Rust, and the build and the
# runs are several times faster without ASan), then runs each for a few seconds from its seed
# corpus. New inputs go to a scratch folder, not to fuzz/corpus/; a crash is left in
# fuzz/artifacts/TARGET/ and fails the run (copy it to fuzz/regressions/TARGET/ with the fix).
#   scripts/fuzz-smoke.sh              every target, FUZZ_SECS (default 3) seconds each
#   scripts/fuzz-smoke.sh fib_msg ...  only these
# Long runs by hand:
#   cargo +nightly fuzz run -s none --features libfuzzer TARGET -- -runs=10000000
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${FUZZ_SECS:-3}

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "warning: no nightly toolchain (rustup toolchain install nightly): fuzz smoke run SKIPPED" >&2
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

targets=("$@")
if [ ${#targets[@]} = 0 ]; then
    mapfile -t targets < <(cd fuzz/fuzz_targets && ls *.rs | sed 's/\.rs$//')
fi

echo "== cargo fuzz build (${#targets[@]} targets)"
start=$SECONDS
cargo +nightly fuzz build -s none --features libfuzzer
echo "   built in $((SECONDS - start)) s"

bindir=target/x86_64-unknown-linux-gnu/release
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t" "fuzz/artifacts/$t"
    dirs=("$scratch/$t" "fuzz/corpus/$t")
    [ -d "fuzz/regressions/$t" ] && dirs+=("fuzz/regressions/$t")
    if "$bindir/$t" -max_total_time="$secs" -rss_limit_mb=1024 -timeout=10 \
        -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 "${dirs[@]}" \
        >"$scratch/$t.log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$t.log" | grep -o '[0-9]*$' || echo '?')
        printf '   %-18s ok, %s runs\n' "$t" "$runs"
    else
        printf '   %-18s FAILED\n' "$t"
        tail -40 "$scratch/$t.log" >&2
        failed+=("$t")
    fi
done
echo "   smoke run took $((SECONDS - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz smoke run failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
