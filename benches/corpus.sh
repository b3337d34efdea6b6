#!/usr/bin/env bash
# The corpus of ordinary requests (issue 17): ~30 tiny projects, each with a task
# phrased as people phrase them (benches/corpus/tasks.toml), run one after another
# against the local model at temperature 0; prints a table of results, the success
# rate, the median and worst time and the kinds of failure.
# Needs the local model: `pod model up` first. A full run takes ~30-40 min on 2 cores.
# Usage: benches/corpus.sh [all | id,id,... | kind,...] [report.md]
# POD_CORPUS_EXTRA="dry_multiplier = 0.8" adds request fields ([model.extra]) to try
# the server's sampling controls.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
which="${1:-all}"
report="${2:-}"
cargo build -q -p pod --bins
status="$("${CARGO_TARGET_DIR:-target}/debug/pod" model status 2>&1 || true)"
url="$(grep -o 'http://127.0.0.1:[0-9]*/v1' <<<"$status" | head -1 || true)"
[ -n "$url" ] || {
    echo "corpus: the local model is not running; run \`pod model up\` first" >&2
    exit 1
}
export POD_TEST_MODEL_URL="$url" POD_TEST_CORPUS="$which"
export POD_MODEL_DIR="${POD_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pods/models}"
[ -n "$report" ] && export POD_CORPUS_REPORT="$(realpath -m "$report")"
exec cargo test -q -p pod --test real_model corpus_of_ordinary_requests -- --nocapture --test-threads 1
