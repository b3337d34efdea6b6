#!/usr/bin/env bash
# Start-up time of the sandbox helper (`pod-sandbox </dev/null`), old code against new,
# timed alternately in one run: median / p10 / p90 of N runs each, release builds.
# The old helper is built from a git revision in a temporary worktree that shares the
# target dir (third-party crates are not compiled again).
# Usage: benches/helper_start.sh [old-rev] [runs]   (defaults: main, 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
old_rev="${1:-main}"
runs="${2:-1000}"
target="${CARGO_TARGET_DIR:-$root/target}"
out="$target/helper-start"
mkdir -p "$out"

# The old helper, from a throwaway worktree of old_rev.
tree="$(mktemp -d)"
trap 'git -C "$root" worktree remove --force "$tree" >/dev/null 2>&1 || true; rm -rf "$tree"' EXIT
git worktree add --detach "$tree" "$old_rev" >/dev/null
(cd "$tree" && CARGO_TARGET_DIR="$target" cargo build --release -q -p pod --bin pod-sandbox)
cp "$target/release/pod-sandbox" "$out/pod-sandbox.old"

# The new helper, from this tree (built after the old one, so target/release holds it).
CARGO_TARGET_DIR="$target" cargo build --release -q -p pod --bin pod-sandbox
cp "$target/release/pod-sandbox" "$out/pod-sandbox.new"
if cmp -s "$out/pod-sandbox.old" "$out/pod-sandbox.new"; then
  echo "note: the old and new helpers are the same binary" >&2
fi

CARGO_TARGET_DIR="$target" cargo build --release -q -p sandbox --example helper_start
"$target/release/examples/helper_start" "$out/pod-sandbox.old" "$out/pod-sandbox.new" "$runs"
