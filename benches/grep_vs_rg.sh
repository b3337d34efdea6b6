#!/usr/bin/env bash
# Grep tool vs the `rg` binary: median wall time of several runs over a large tree.
#
#   benches/grep_vs_rg.sh            # corpus: a copy of ~/.cargo/registry/src
#   CORPUS=/some/tree RUNS=9 benches/grep_vs_rg.sh
#
# The Grep tool is timed in process (tools/examples/grep_bench.rs, release build): one
# call of the tool as a pod makes it, scope checks and open-beneath included. rg is
# timed as a process writing to a file (not /dev/null: rg detects that and stops at the
# first match); its start-up, ~1 ms, is included. Runs
# alternate between the two after one warm-up each, so both see the same page cache.
# Needs rg (Debian: apt-get install -y ripgrep).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS=${RUNS:-7}
target=${CARGO_TARGET_DIR:-target}

command -v rg >/dev/null || { echo "rg not found; install it (apt-get install -y ripgrep)" >&2; exit 1; }

if [[ -z "${CORPUS:-}" ]]; then
    CORPUS=${TMPDIR:-/tmp}/pods-grep-corpus
    if [[ ! -d "$CORPUS" ]]; then
        src=$(echo "$HOME"/.cargo/registry/src)
        [[ -d "$src" ]] || { echo "no $src to copy; set CORPUS=<dir>" >&2; exit 1; }
        echo "copying $src to $CORPUS ..." >&2
        cp -r "$src" "$CORPUS.partial"
        mv "$CORPUS.partial" "$CORPUS"
    fi
fi

cargo build --quiet --release -p tools --example grep_bench
bench="$target/release/examples/grep_bench"

echo "corpus: $CORPUS ($(du -sh "$CORPUS" | cut -f1), $(find "$CORPUS" -type f | wc -l) files)"
echo "rg: $(rg --version | head -1); runs: $RUNS; cores: $(nproc)"

rg_out=$(mktemp)
trap 'rm -f "$rg_out"' EXIT

# Wall time of one rg run in ms.
time_rg() {
    local start end
    start=$EPOCHREALTIME
    (cd "$CORPUS" && rg "$@" >"$rg_out") || true # exit 1 means no match
    end=$EPOCHREALTIME
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f\n", (e - s) * 1000 }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

printf '\n%-20s %-28s %10s %10s %7s\n' mode pattern "rg ms" "Grep ms" ratio
# case: output mode, pattern, rg flags for the same output
run_case() {
    local mode=$1 pattern=$2
    shift 2
    local rg_times=() ours_times=()
    time_rg "$@" -e "$pattern" >/dev/null
    "$bench" "$CORPUS" "$pattern" "$mode" 1 >/dev/null 2>&1
    for _ in $(seq "$RUNS"); do
        rg_times+=("$(time_rg "$@" -e "$pattern")")
        ours_times+=("$("$bench" "$CORPUS" "$pattern" "$mode" 1 2>/dev/null)")
    done
    local rg_med ours_med
    rg_med=$(printf '%s\n' "${rg_times[@]}" | median)
    ours_med=$(printf '%s\n' "${ours_times[@]}" | median)
    awk -v m="$mode" -v p="$pattern" -v r="$rg_med" -v o="$ours_med" \
        'BEGIN { printf "%-20s %-28s %10.1f %10.1f %6.2fx\n", m, p, r, o, o / r }'
}

run_case files_with_matches 'unsafe' -l
run_case files_with_matches 'PhantomData<\w+>' -l
run_case count 'TODO' -c
run_case content 'fn parse_[a-z_]+\(' -n
run_case content 'zzq_no_such_token_qzz' -n
