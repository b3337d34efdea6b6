#!/usr/bin/env bash
# MCP start-up cost (issue 20): pod cold start (exec → ready line) with no MCP
# server and with the two reference servers started in its sandbox.
# Usage: benches/mcp_bench.sh [runs]   (default 10)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/mcp-test-servers.sh
cargo build --release -p pod --bins --example mcp_bench
target_dir="${CARGO_TARGET_DIR:-target}"
"$target_dir/release/examples/mcp_bench" "$target_dir/release/pod" "$target_dir/mcp-servers" "${1:-10}"
