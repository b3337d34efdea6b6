#!/usr/bin/env bash
# SpawnPod → the child's first token on the local model (issue 16): a parent pod is
# asked to delegate a one-file task; the figure is the time from the parent's
# SpawnPod call being complete (`tool_call_done`) to the child's first streamed
# output (text or a tool call), watched with `pod attach --json` on the child.
# Also printed: the whole task's time. Needs a warm local model (`pod model up`).
# Usage: benches/spawn_bench.sh [rounds]   (default 3)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds="${1:-3}"
bench=spawn_bench
# shellcheck source=benches/local_model_home.sh
source benches/local_model_home.sh

for i in $(seq 1 "$rounds"); do
    mkdir -p "$home/work/r$i"
    "$pod" start --name "boss$i" --cwd "$home/work/r$i" >/dev/null
    python3 - "$pod" "boss$i" "$home/rt" <<'PY'
import glob, json, os, subprocess, sys, time
pod, name, rt = sys.argv[1:4]
task = ("Delegate a task to a child pod named docs that works in the directory docs, and "
        "when the child has finished, reply: done. The task: create the file README.md "
        "containing exactly: hello from the child")
t_start = time.monotonic()
parent = subprocess.Popen([pod, "send", name, task, "--wait", "--json"],
                          stdout=subprocess.PIPE, text=True)
spawned = None
for line in parent.stdout:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("event") == "tool_call_done" and "SpawnPod" in line:
        spawned = time.monotonic()
        break
if spawned is None:
    print(f"{name}: no SpawnPod call"); parent.wait(); sys.exit(0)
sock = None
while time.monotonic() - spawned < 60 and sock is None:
    found = glob.glob(os.path.join(rt, f"{name}.*", "sock"))
    sock = found[0] if found else None
    time.sleep(0.01)
child = os.path.basename(os.path.dirname(sock)) if sock else None
first = None
if child:
    watch = subprocess.Popen([pod, "attach", child, "--json"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    for line in watch.stdout:
        try:
            ev = json.loads(line).get("event")
        except ValueError:
            continue
        if ev in ("text_delta", "tool_call_start", "thinking_delta"):
            first = time.monotonic() - spawned
            break
        if time.monotonic() - spawned > 120:
            break
    watch.kill()
for _ in parent.stdout:
    pass
parent.wait()
total = time.monotonic() - t_start
print(f"{name}: SpawnPod → child's first token {first:.2f} s; whole task {total:.1f} s"
      if first is not None else f"{name}: the child streamed nothing; whole task {total:.1f} s")
PY
done
