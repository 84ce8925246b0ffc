#!/usr/bin/env bash
# The test command: installs what the tests need (Debian, as root), then runs formatting,
# lints, the whole test suite (the fuzz corpora replayed on stable among them), a bounded smoke run
# of every fuzz target (scripts/fuzz-smoke.sh, nightly), a 2-minute soak of a six-router mesh under
# faults (scripts/soak.sh, debug binaries) and the loom model of the signal ring.
#   scripts/test.sh            everything
#   scripts/test.sh --quick    skip the fuzz smoke run, the soak and the loom model
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1

need=()
for pkg_cmd in iproute2:ip iputils-ping:ping iperf3:iperf3 curl:curl tmux:tmux python3:python3 nftables:nft \
    prometheus:promtool dpkg-dev:dpkg-shlibdeps binutils:strip; do
    pkg=${pkg_cmd%%:*}; cmd=${pkg_cmd##*:}
    command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== installing ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "warning: missing ${need[*]} (run as root on Debian to install them)" >&2
    fi
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "== installing cargo-nextest"
    cargo install --locked cargo-nextest
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo nextest run"
cargo build --workspace --bins --locked
cargo nextest run --workspace --locked --no-fail-fast
if [ $quick = 0 ]; then
    echo "== fuzz smoke run"
    scripts/fuzz-smoke.sh
    echo "== soak (2 minutes: six routers, traffic, link flaps, kills, rekeys)"
    scripts/soak.sh 120 --debug
    echo "== loom model of the signal ring"
    RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p signal --test loom --release --locked
fi
