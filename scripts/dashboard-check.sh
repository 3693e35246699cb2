#!/usr/bin/env bash
# Drives the dashboard in a real browser: Debian's Chromium (installed with apt-get when missing;
# Playwright cannot download its own browser here) under playwright-core, against a real
# `keyward serve` on a fresh SQLite file. Walks the operator's flow: sign in with the root key,
# create a key and read it from the shown-once dialog, call /v1/status with it, edit,
# deactivate (401) and activate (200), rotate (old 401, new 200), revoke (401, listed under
# Revoked), delete, the audit log with the IP, the narrow layout, a key without keys:read, a plan
# without API access, a plan at its key limit, sign out (the session is gone server-side).
#
# Screenshots of each screen go to ${DASHBOARD_SCREENSHOTS:-target/dashboard-screenshots}.
# Needs node (20+) and npm, and the npm registry the first time: the exact versions of
# scripts/dashboard/package-lock.json are installed with `npm ci` into
# ${KEYWARD_CACHE_DIR:-~/.cache/keyward}, one folder per lock file, never into the repository.
# CHROMIUM names another browser binary. Honours CARGO_TARGET_DIR. Any failing step fails the
# script; the server is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CHECK="$ROOT/scripts/dashboard"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
SHOTS="${DASHBOARD_SCREENSHOTS:-$ROOT/target/dashboard-screenshots}"

for tool in node npm; do
    command -v "$tool" >/dev/null || { echo "dashboard-check: needs $tool (Debian: apt-get install nodejs npm)" >&2; exit 1; }
done
if (( $(node -p 'process.versions.node.split(".")[0]') < 20 )); then
    echo "dashboard-check: needs node 20 or later, found $(node --version)" >&2
    exit 1
fi
if [[ ! -x "$CHROMIUM" ]]; then
    echo "dashboard-check: $CHROMIUM is missing; installing Debian's chromium"
    SUDO=""
    if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
echo "dashboard-check: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"

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

npm_deps dashboard-check "$CHECK" dashboard-check
echo "dashboard-check: playwright-core $(node -p 'require(process.argv[1]).version' "$DEPS/node_modules/playwright-core/package.json")"

# Inside $DEPS, so that node finds playwright-core in its node_modules.
WORK="$(mktemp -d "$DEPS/run.XXXXXX")"
cp "$CHECK/check.mjs" "$WORK/"
rm -rf "$SHOTS"
mkdir -p "$SHOTS"

start_keyward dashboard-check

echo "dashboard-check: driving $BASE/dashboard/ in $CHROMIUM; screenshots in $SHOTS"
KEYWARD_ROOT_KEY="$ROOT_KEY" CHROMIUM="$CHROMIUM" DASHBOARD_SCREENSHOTS="$SHOTS" node "$WORK/check.mjs" "$BASE"
