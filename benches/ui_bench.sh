#!/usr/bin/env bash
# Whole-process benchmarks of the UI (issue 15), release build, in tmux:
#   1. start to first frame with 20 pods running (median of RUNS),
#   2. frames per second and CPU of the UI while one pod streams 100k deltas,
#   3. the UI's memory showing a pod restored with a 50k-entry transcript.
# The provider is a tiny OpenAI-compatible SSE server on 127.0.0.1 (python3).
# Usage: benches/ui_bench.sh [runs]   (default 10)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs="${1:-10}"
cargo build --release -q -p pod --bins
cargo build --release -q -p pod-tui --bins --example gen_session
target_dir="${CARGO_TARGET_DIR:-target}"
pod="$(realpath "$target_dir/release/pod")"
ui="$(realpath "$target_dir/release/pod-ui")"
gen="$(realpath "$target_dir/release/examples/gen_session")"
command -v tmux >/dev/null || { echo "ui_bench: tmux is needed" >&2; exit 1; }

home="$(mktemp -d)"
sock="$home/tmux.sock"
server_pid=""
cleanup() {
    tmux -S "$sock" kill-server 2>/dev/null || true
    for pidfile in "$home"/rt/*/pid; do
        [ -f "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
    done
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$home"
}
trap cleanup EXIT
mkdir -p "$home/rt" "$home/st" "$home/cfg" "$home/home" "$home/work"
chmod 700 "$home/rt"

# The provider: every request gets DELTAS one-word deltas, then a finish.
cat >"$home/provider.py" <<'PY'
import http.server, json, sys
DELTAS = int(sys.argv[1])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        def chunk(obj):
            data = b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        base = {"id": "c", "object": "chat.completion.chunk", "model": "bench"}
        buf = []
        for i in range(DELTAS):
            buf.append({**base, "choices": [{"index": 0, "delta": {"content": "word%d " % i}}]})
            if len(buf) == 200:
                for o in buf: chunk(o)
                buf = []
        for o in buf: chunk(o)
        chunk({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        chunk({**base, "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": DELTAS}})
        chunk(b"[DONE]")
        self.wfile.write(b"0\r\n\r\n")
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
PY
python3 "$home/provider.py" 100000 >"$home/port" &
server_pid=$!
for _ in $(seq 100); do [ -s "$home/port" ] && break; sleep 0.05; done
port="$(cat "$home/port")"

export POD_RUNTIME_DIR="$home/rt" POD_HOME="$home/st" POD_CONFIG_DIR="$home/cfg" \
    HOME="$home/home" POD_BASE_URL="http://127.0.0.1:$port/v1" POD_MODEL=bench \
    POD_BIN="$pod" TERM=xterm-256color
for i in $(seq -w 1 20); do
    mkdir -p "$home/work/p$i"
    "$pod" start --name "p$i" --cwd "$home/work/p$i" >/dev/null
done

# Runs the UI in tmux (100x30) with ARGS, tracing to $home/trace.
open_ui() {
    rm -f "$home/trace" "$home/t0"
    tmux -S "$sock" -f /dev/null new-session -d -s ui -x 100 -y 30 \
        "date +%s%3N >'$home/t0'; POD_UI_TRACE='$home/trace' exec '$ui' $*"
    for _ in $(seq 400); do grep -q first_frame "$home/trace" 2>/dev/null && return 0; sleep 0.01; done
    echo "ui_bench: no first frame" >&2
    exit 1
}
close_ui() {
    tmux -S "$sock" send-keys -t ui C-d
    for _ in $(seq 400); do grep -q '"frames"' "$home/trace" 2>/dev/null && break; sleep 0.01; done
    tmux -S "$sock" kill-server 2>/dev/null || true
    for _ in $(seq 200); do pgrep -x pod-ui >/dev/null || break; sleep 0.01; done
}
ui_pid() { pgrep -n -x pod-ui; }

# 1. Start to first frame with 20 pods running.
firsts=()
for _ in $(seq "$runs"); do
    open_ui
    t0="$(cat "$home/t0")"
    first="$(grep -o '"first_frame_unix_ms":[0-9]*' "$home/trace" | cut -d: -f2)"
    firsts+=("$((first - t0))")
    close_ui
done
median="$(printf '%s\n' "${firsts[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
echo "start to first frame, 20 pods: median ${median} ms (runs: ${firsts[*]})"

# 2. One pod streams 100k deltas while the UI shows it.
open_ui p01
pid="$(ui_pid)"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"
cpu0="$(ticks "$pid")"; t0="$(date +%s%3N)"
"$pod" send p01 "stream" --wait >/dev/null
t1="$(date +%s%3N)"; cpu1="$(ticks "$pid")"
sleep 0.3
rss_stream="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
close_ui
frames="$(grep -o '"frames":[0-9]*' "$home/trace" | cut -d: -f2)"
events="$(grep -o '"events":[0-9]*' "$home/trace" | cut -d: -f2)"
draw_max="$(grep -o '"draw_ms_max":[0-9.]*' "$home/trace" | cut -d: -f2)"
secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print (b - a) / 1000}')"
echo "100k deltas: stream ${secs} s; UI ${frames} frames ($(awk -v f="$frames" -v s="$secs" 'BEGIN {printf "%.0f", f / s}') fps), ${events} events handled, CPU $(awk -v c="$((cpu1 - cpu0))" -v h="$hz" -v s="$secs" 'BEGIN {printf "%.0f", 100 * c / h / s}') % of one core, longest frame ${draw_max} ms, peak RSS $((rss_stream / 1024)) MiB"

# 3. Pods restored with long transcripts: memory, scrolling, switching.
restore_with() {
    mkdir -p "$home/work/$1"
    "$pod" start --name "$1" --cwd "$home/work/$1" >/dev/null
    "$pod" stop "$1" >/dev/null
    "$gen" "$home/st/sessions/$1" "$2" "($1)" >/dev/null
    local t0
    t0="$(date +%s%3N)"
    "$pod" restore "$1" >/dev/null
    echo "restore of a pod with $2 more entries: $(( $(date +%s%3N) - t0 )) ms"
}
restore_with big 50000
restore_with mid 10000
wait_screen() {
    for _ in $(seq 500); do
        tmux -S "$sock" capture-pane -p -t ui | grep -q "$1" && return 0
        sleep 0.01
    done
    echo "ui_bench: the UI never showed '$1'" >&2
    tmux -S "$sock" capture-pane -p -t ui >&2
    exit 1
}
t0="$(date +%s%3N)"
open_ui big
pid="$(ui_pid)"
wait_screen "next module (big)"
echo "UI open on the 50k-entry pod until its last answer shows: $(( $(date +%s%3N) - t0 )) ms"
for _ in $(seq 40); do tmux -S "$sock" send-keys -t ui PageUp; sleep 0.02; done
for _ in $(seq 40); do tmux -S "$sock" send-keys -t ui PageDown; sleep 0.02; done
sleep 0.2
rss="$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")"
hwm="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
echo "UI showing a 50k-entry transcript: RSS $((rss / 1024)) MiB (peak $((hwm / 1024)) MiB)"
close_ui
echo "scrolling it (80 pages): longest frame $(grep -o '"draw_ms_max":[0-9.]*' "$home/trace" | cut -d: -f2) ms, longest key to frame $(grep -o '"key_ms_max":[0-9.]*' "$home/trace" | cut -d: -f2) ms"

# Switching: the first view of `mid` connects and decodes its 10k-entry
# snapshot; after that both stay connected and a switch is a redraw.
open_ui big
wait_screen "next module (big)"
tmux -S "$sock" send-keys -t ui Tab
t0="$(date +%s%3N)"
tmux -S "$sock" send-keys -t ui Down
wait_screen "next module (mid)"
echo "first view of the 10k-entry pod (connect + snapshot): $(( $(date +%s%3N) - t0 )) ms to the screen (tmux polling included)"
for _ in $(seq 10); do
    tmux -S "$sock" send-keys -t ui Up; sleep 0.05
    tmux -S "$sock" send-keys -t ui Down; sleep 0.05
done
close_ui
echo "switching between the 50k- and 10k-entry pods (20 switches): longest key to frame $(grep -o '"key_ms_max":[0-9.]*' "$home/trace" | cut -d: -f2) ms, last $(grep -o '"key_ms_last":[0-9.]*' "$home/trace" | cut -d: -f2) ms"
