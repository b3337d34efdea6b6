# Sourced by the benches that run pods on the local model: builds the release `pod`
# (as $pod), checks that `pod model up` runs the server, and points every pods
# directory at a fresh temp home ($home) that is removed, its pods killed, on exit.
# The caller sets $bench (its name, for messages) and has cd'ed to the repo root.
cargo build --release -q -p pod --bins
pod="$(realpath "${CARGO_TARGET_DIR:-target}/release/pod")"
status="$("$pod" model status 2>&1 || true)"
grep -q "running at" <<<"$status" || {
    echo "$bench: the local model is not running; run \`pod model up\` first" >&2
    exit 1
}
# The model's files stay where `pod model up` put them.
export POD_MODEL_DIR="${POD_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pods/models}"
home="$(mktemp -d)"
cleanup() {
    for pidfile in "$home"/rt/*/pid; do
        [ -f "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
    done
    rm -rf "$home"
}
trap cleanup EXIT
mkdir -p "$home/rt" "$home/st" "$home/cfg" "$home/home"
chmod 700 "$home/rt"
export POD_RUNTIME_DIR="$home/rt" POD_HOME="$home/st" POD_CONFIG_DIR="$home/cfg" HOME="$home/home"
unset POD_BASE_URL POD_MODEL ANTHROPIC_API_KEY OPENAI_API_KEY GEMINI_API_KEY
