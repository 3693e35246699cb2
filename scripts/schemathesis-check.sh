#!/usr/bin/env bash
# Checks that the OpenAPI document tells the truth about the running server: starts a real
# `keyward serve` on a fresh SQLite file and a free local port, raises the root key's and its
# workspace's rate limits through the API, then runs a pinned schemathesis against it with every
# check (`--checks all`), every phase (examples, coverage, fuzzing, stateful) and the root key.
# Any finding fails the script. The one streaming operation, `GET /v1/verifier/events` (an
# event stream that never ends by itself), is left out: a request of it would only time out; the
# API tests (tests/api/verifier.rs) and the remote-mode tests read it. `POST /v1/leaks/github`
# takes no API key (GitHub's signature instead, `x-keyward-authentication`): it is fuzzed
# unsigned, so every case must be a documented 401, and the hooks leave it out of the
# past-authentication share; tests/api/leaks.rs sends it signed reports. Hooks (scripts/schemathesis_hooks.py) keep the run from disabling
# its own key and move values inside the rules JSON Schema cannot state; the script fails too when
# fewer than SCHEMATHESIS_MIN_CASES cases were sent or too few of them got past authentication.
#
# Needs python3 (3.10+) with venv, and PyPI the first time (the venv is cached in
# ${KEYWARD_CACHE_DIR:-~/.cache/keyward}). Honours CARGO_TARGET_DIR. Rerun as is after a merge.
# SCHEMATHESIS_MAX_TIME (the run's budget in seconds, default 120; fuzzing and stateful testing
# repeat until it is spent), SCHEMATHESIS_SEED, SCHEMATHESIS_MAX_EXAMPLES and SCHEMATHESIS_ARGS
# (extra `st run` arguments, e.g. `--include-path-regex /v1/keys`) vary a run. Each finding prints
# a curl line that reproduces it (with the key filtered out: put the root key back in);
# set SCHEMATHESIS_REPORT_DIR to keep the JUnit report and the VCR cassette of every request.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SCHEMATHESIS_VERSION="4.32.5"
SPEC="$ROOT/openapi/keyward.openapi.json"
SEED="${SCHEMATHESIS_SEED:-20260101}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
MAX_TIME="${SCHEMATHESIS_MAX_TIME:-120}"
MIN_CASES="${SCHEMATHESIS_MIN_CASES:-1000}"
# Share of the requests sent with the root key that must get past authentication.
MIN_PAST_AUTH_PERCENT=90

CACHE="${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}"
VENV="$CACHE/schemathesis-$SCHEMATHESIS_VERSION"
WORK="$(mktemp -d)"
REPORTS="${SCHEMATHESIS_REPORT_DIR:-$WORK/reports}"
# shellcheck source=scripts/lib/serve.sh
source "$ROOT/scripts/lib/serve.sh"
cleanup() {
    stop_keyward
    rm -rf "$WORK"
}
trap cleanup EXIT

# The marker is written last, so an interrupted install is never taken for a finished one (a venv
# cannot be built aside and moved: its scripts name their interpreter by absolute path).
if [[ ! -f "$VENV/.installed" ]]; then
    echo "schemathesis-check: installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    rm -rf "$VENV"
    mkdir -p "$CACHE"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
    touch "$VENV/.installed"
fi

echo "schemathesis-check: building keyward"
KEYWARD_LOG=warn start_keyward schemathesis-check

echo "schemathesis-check: raising the root key's and its workspace's rate limits"
# Prints the key id, workspace id and plan id the hooks protect.
IDS="$(python3 - "$BASE" "$ROOT_KEY" <<'PY'
import json
import sys
import urllib.request

base, key = sys.argv[1], sys.argv[2]
generous = {"rateLimit": [{"limit": 1_000_000, "periodSecs": 60}]}


def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method, headers={"Authorization": f"Bearer {key}"})
    if body is not None:
        req.data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req) as resp:
        return json.load(resp)


status = call("GET", "/v1/status")
key_id, workspace_id = status["keyId"], status["workspaceId"]
assert call("PATCH", f"/v1/keys/{key_id}", generous)["rateLimit"] == generous["rateLimit"]
workspace = call("PATCH", f"/v1/workspaces/{workspace_id}", generous)
assert workspace["effectiveRateLimit"] == generous["rateLimit"], workspace
print(key_id, workspace_id, workspace["planId"])
PY
)"
read -r KEY_ID WORKSPACE_ID PLAN_ID <<<"$IDS"

echo "schemathesis-check: schemathesis $SCHEMATHESIS_VERSION against $BASE (seed $SEED)"
mkdir -p "$REPORTS"
STATUS=0
# shellcheck disable=SC2086 # SCHEMATHESIS_ARGS is a list of arguments
SCHEMATHESIS_HOOKS="$ROOT/scripts/schemathesis_hooks.py" \
KEYWARD_ST_KEY_ID="$KEY_ID" KEYWARD_ST_WORKSPACE_ID="$WORKSPACE_ID" KEYWARD_ST_PLAN_ID="$PLAN_ID" \
KEYWARD_ST_ROOT_KEY="$ROOT_KEY" KEYWARD_ST_STATS="$WORK/stats.json" \
    "$VENV/bin/st" --config-file "$ROOT/scripts/schemathesis.toml" run "$SPEC" \
    --url "$BASE" \
    --header "Authorization: Bearer $ROOT_KEY" \
    --checks all \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$MAX_EXAMPLES" \
    --max-time "$MAX_TIME" \
    --seed "$SEED" \
    --workers 1 \
    --request-timeout 10 \
    --no-color \
    --report junit,vcr --report-dir "$REPORTS" \
    --exclude-path /v1/verifier/events \
    ${SCHEMATHESIS_ARGS:-} || STATUS=$?

python3 - "$WORK/stats.json" "$MIN_CASES" "$MIN_PAST_AUTH_PERCENT" <<'PY' || STATUS=1
import json
import sys

stats = json.load(open(sys.argv[1]))
min_cases, min_percent = int(sys.argv[2]), int(sys.argv[3])
authed, past = stats["with_root_key"], stats["past_auth"]
percent = 100 * past / authed if authed else 0
print(
    f"schemathesis-check: {stats['requests']} requests; {authed} with the root key, {past} of them "
    f"({percent:.1f}%) past authentication; {stats['redirected']} aimed at the run's own key, "
    f"workspace or plan were redirected; statuses {stats['statuses']}"
)
if stats["requests"] < min_cases:
    sys.exit(f"schemathesis-check: fewer than {min_cases} requests")
if percent < min_percent:
    sys.exit(f"schemathesis-check: under {min_percent}% of the root key's requests got past authentication")
PY

if [[ "$STATUS" -ne 0 ]]; then
    echo "schemathesis-check: FAILED; the curl lines above reproduce each finding" >&2
    exit "$STATUS"
fi
echo "schemathesis-check: no findings"
