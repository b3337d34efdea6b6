#!/usr/bin/env bash
# Cost per command of the sandbox: spawn -> exit of `true` through `pod __sandbox-exec`
# (levels full and landlock) and as plain `bash -c` (sandbox off), median of N runs each,
# release build. Usage: benches/sandbox_cost.sh [runs]   (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p pod --bins   # pod and pod-sandbox (the helper pods use)
cargo build --release -p sandbox --example sandbox_cost
"$target/release/examples/sandbox_cost" "$target/release/pod" "${1:-200}"
