#!/usr/bin/env bash
# The main job. For now: build the workspace and run viscript's headless console on the default
# config.yaml (the meshnet demo replaces this once the dataplane and controlplane land).
# Pass commands on stdin to script it:  printf 'apps\ns -w signal-demo\nla\nquit\n' | scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins --locked
exec target/debug/viscript --headless --config config.yaml "$@"
