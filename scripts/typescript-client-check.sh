#!/usr/bin/env bash
# Checks that the OpenAPI document serves TypeScript clients: generates types from
# openapi/keyward.openapi.json with a pinned openapi-typescript (no hand edits), type-checks
# scripts/ts-client/check.mts against them with tsc (strict; nothing runs if it fails), starts a
# real `keyward serve` on a free local port, and drives it with openapi-fetch: create a key, list,
# rotate, revoke, the typed error bodies of a 401, a 403 and a 404, and POST /v1/verify.
#
# Needs node (20+) and npm, and the npm registry the first time: the exact versions of
# scripts/ts-client/package-lock.json are installed with `npm ci` into
# ${KEYWARD_CACHE_DIR:-~/.cache/keyward}, one folder per lock file, never into the repository.
# Honours CARGO_TARGET_DIR. Any failing step fails the script; the server is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CLIENT="$ROOT/scripts/ts-client"
SPEC="$ROOT/openapi/keyward.openapi.json"

for tool in node npm; do
    command -v "$tool" >/dev/null || { echo "typescript-client-check: needs $tool (Debian: apt-get install nodejs npm)" >&2; exit 1; }
done
if (( $(node -p 'process.versions.node.split(".")[0]') < 20 )); then
    echo "typescript-client-check: needs node 20 or later, found $(node --version)" >&2
    exit 1
fi

WORK=""
# shellcheck source=scripts/lib/npm.sh
source "$ROOT/scripts/lib/npm.sh"
# shellcheck source=scripts/lib/serve.sh
source "$ROOT/scripts/lib/serve.sh"
cleanup() {
    stop_keyward
    if [[ -n "$WORK" ]]; then
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

npm_deps typescript-client-check "$CLIENT" ts-client
BIN="$DEPS/node_modules/.bin"
version() { node -p 'require(process.argv[1]).version' "$DEPS/node_modules/$1/package.json"; }
echo "typescript-client-check: openapi-typescript $(version openapi-typescript)," \
    "openapi-fetch $(version openapi-fetch), typescript $(version typescript)"

# Inside $DEPS, so that tsc and node find the packages in its node_modules.
WORK="$(mktemp -d "$DEPS/run.XXXXXX")"
cp "$CLIENT/tsconfig.json" "$CLIENT/check.mts" "$WORK/"

echo "typescript-client-check: generating types from ${SPEC#"$ROOT/"}"
"$BIN/openapi-typescript" "$SPEC" --output "$WORK/keyward-api.ts"
echo "typescript-client-check: type-checking check.mts against them (tsc --strict)"
"$BIN/tsc" -p "$WORK/tsconfig.json"

start_keyward typescript-client-check

echo "typescript-client-check: driving $BASE with the generated client"
KEYWARD_ROOT_KEY="$ROOT_KEY" node "$WORK/out/check.mjs" "$BASE"
