#!/usr/bin/env bash
# How long a new pod's first request takes on the local model (issue 16, item 7):
# time from `pod send` to the pod's first streamed output, for a first pod (cold
# prompt cache: everything is read) and then for new pods in other directories
# (their system turn starts with the same tools and instruction, which llama.cpp's
# prompt cache keeps, so only the pod-specific rest is read).
# Needs the local model: `pod model up` first (a warm server). Release build.
# Usage: benches/prefix_bench.sh [pods]   (default 3)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pods="${1:-3}"
bench=prefix_bench
# shellcheck source=benches/local_model_home.sh
source benches/local_model_home.sh

# Seconds from sending TASK to NAME until its first streamed output.
first_output() {
    python3 - "$pod" "$1" "$2" <<'PY'
import json, subprocess, sys, time
pod, name, task = sys.argv[1:4]
t0 = time.monotonic()
p = subprocess.Popen([pod, "send", name, task, "--wait", "--json"], stdout=subprocess.PIPE, text=True)
first = None
for line in p.stdout:
    try:
        event = json.loads(line).get("event")
    except ValueError:
        continue
    if first is None and event in ("text_delta", "tool_call_start", "thinking_delta"):
        first = time.monotonic() - t0
p.wait()
print(f"{first:.2f}" if first is not None else "none")
PY
}

task="Reply with one short sentence saying hello."
for i in $(seq 1 "$pods"); do
    mkdir -p "$home/work/p$i"
    "$pod" start --name "p$i" --cwd "$home/work/p$i" >/dev/null
    echo "pod $i (directory p$i): first output after $(first_output "p$i" "$task") s"
done
