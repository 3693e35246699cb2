#!/usr/bin/env bash
# Checks the webhook receivers that docs/webhooks.md shows: each snippet there must be its file
# (docs/webhooks/verify.py, docs/webhooks/verify.ts, examples/webhook-receiver/src/main.rs)
# verbatim; verify.py (python3, standard library) and verify.ts (compiled with a pinned tsc,
# strict) must give every case of docs/webhooks/vectors.json its verdict; and each, run as a
# server on a free local port, must answer 204 to a freshly signed delivery and 400 to a tampered
# one. The vectors come from keyward-core's Rust signing code, whose tests fail when the file is
# stale. The Rust receiver is built with cargo and run as a server too. Honours CARGO_TARGET_DIR.
#
# Needs python3 (3.10+), node (20+) and npm, and the npm registry the first time: the exact
# versions of scripts/webhook-verify/package-lock.json are installed with `npm ci` into
# ${KEYWARD_CACHE_DIR:-~/.cache/keyward}, never into the repository. Any failing step fails it.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HERE="$ROOT/scripts/webhook-verify"
DOCS="$ROOT/docs/webhooks"
VECTORS="$DOCS/vectors.json"

for tool in python3 node npm; do
    command -v "$tool" >/dev/null || { echo "webhook-verify-check: needs $tool (Debian: apt-get install python3 nodejs npm)" >&2; exit 1; }
done
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "webhook-verify-check: needs python 3.10 or later, found $(python3 --version)" >&2
    exit 1
fi
if (( $(node -p 'process.versions.node.split(".")[0]') < 20 )); then
    echo "webhook-verify-check: needs node 20 or later, found $(node --version)" >&2
    exit 1
fi

WORK=""
# shellcheck source=scripts/lib/npm.sh
source "$ROOT/scripts/lib/npm.sh"
cleanup() {
    if [[ -n "$WORK" ]]; then
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

python3 "$HERE/check.py" doc "$ROOT/docs/webhooks.md" "$ROOT" \
    docs/webhooks/verify.py docs/webhooks/verify.ts examples/webhook-receiver/src/main.rs

echo "webhook-verify-check: python $(python3 -c 'import platform; print(platform.python_version())'):" \
    "verify.py over ${VECTORS#"$ROOT/"}"
# -B: no __pycache__ left beside the docs.
python3 -B "$HERE/check.py" vectors "$VECTORS" "$DOCS/verify.py"
python3 -B "$HERE/check.py" serve "$VECTORS" -- python3 -B "$DOCS/verify.py"

npm_deps webhook-verify-check "$HERE" webhook-verify
echo "webhook-verify-check: node $(node --version), typescript" \
    "$(node -p 'require(process.argv[1]).version' "$DEPS/node_modules/typescript/package.json")"
# Inside $DEPS, so that tsc finds @types/node and node runs the output as ES modules.
WORK="$(mktemp -d "$DEPS/run.XXXXXX")"
cp "$HERE/tsconfig.json" "$HERE/check.mts" "$DOCS/verify.ts" "$WORK/"
echo "webhook-verify-check: type-checking verify.ts (tsc --strict)"
"$DEPS/node_modules/.bin/tsc" -p "$WORK/tsconfig.json"
echo "webhook-verify-check: verify.ts over ${VECTORS#"$ROOT/"}"
node "$WORK/out/check.mjs" "$VECTORS"
python3 -B "$HERE/check.py" serve "$VECTORS" -- node "$WORK/out/verify.js"

echo "webhook-verify-check: the Rust receiver (examples/webhook-receiver) as a server"
cargo build --quiet -p example-webhook-receiver
python3 -B "$HERE/check.py" serve "$VECTORS" -- "${CARGO_TARGET_DIR:-$ROOT/target}/debug/example-webhook-receiver"
