#!/usr/bin/env bash
# viscript's headless console on the default config.yaml (debug build).
# Pass commands on stdin to script it:  printf 'apps\ns -w signal-demo\nla\nquit\n' | scripts/console.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins --locked
exec target/debug/viscript --headless --config config.yaml "$@"
