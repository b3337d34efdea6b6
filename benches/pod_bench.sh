#!/usr/bin/env bash
# Whole-process pod benchmarks (issue 5): cold start, idle memory, invocation
# overhead, 100k deltas to 1 and 16 clients. Release build; prints one line each.
# Usage: benches/pod_bench.sh [runs]   (default 20; invocation overhead uses 10x)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -p pod --bins --example pod_bench
target_dir="${CARGO_TARGET_DIR:-target}"
"$target_dir/release/examples/pod_bench" "$target_dir/release/pod" "${1:-20}"
