#!/usr/bin/env bash
# Multi-pod benchmarks (issue 6): SpawnPod → child at work, and `pod ls --json`
# with many idle pods. Release build.
# Usage: benches/tree_bench.sh [spawns] [idle pods]   (defaults 20 and 500)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -p pod --bins --example tree_bench
target_dir="${CARGO_TARGET_DIR:-target}"
"$target_dir/release/examples/tree_bench" "$target_dir/release/pod" "${1:-20}" "${2:-500}"
