#!/usr/bin/env bash
# Installs the reference MCP servers the MCP tests run, pinned, from the npm
# registry into target/mcp-servers (project-local; never npx). Idempotent: an
# install of the pinned versions is kept. Exit 0 when they are there, 4 when the
# registry cannot be reached, 1 on any other failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir="${CARGO_TARGET_DIR:-target}/mcp-servers"
version="2026.8.31"
packages=(
    "@modelcontextprotocol/server-everything@$version"
    "@modelcontextprotocol/server-filesystem@$version"
)
installed() {
    for p in server-everything server-filesystem; do
        local json="$dir/node_modules/@modelcontextprotocol/$p/package.json"
        [ -f "$json" ] && grep -q "\"version\": \"$version\"" "$json" || return 1
    done
}
if installed; then
    echo "MCP test servers: $version already in $dir"
    exit 0
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "MCP test servers: node and npm are needed (Debian: apt-get install nodejs npm)" >&2
    exit 1
fi
mkdir -p "$dir"
if ! npm install --no-audit --no-fund --no-save --prefix "$dir" "${packages[@]}" >"$dir/npm.log" 2>&1; then
    if grep -qiE 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|network' "$dir/npm.log"; then
        exit 4
    fi
    cat "$dir/npm.log" >&2
    exit 1
fi
installed
echo "MCP test servers: $version installed in $dir"
