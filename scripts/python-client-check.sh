#!/usr/bin/env bash
# Checks that the OpenAPI document serves clients in other languages: generates a Python client
# from openapi/keyward.openapi-3.0.json with a pinned openapi-python-client (no hand edits),
# starts a real `keyward serve` on a free local port, and drives it with the generated client:
# create a key, list, rotate, revoke, see the revoked key refused with 401, and check a caller's key
# with POST /v1/verify as a service in Python would.
#
# Needs python3 (3.10+) with venv, and PyPI for the generator and the client's dependencies.
# Honours CARGO_TARGET_DIR. Any failing step fails the script; the server is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
GENERATOR_VERSION="0.29.1"
# The generator formats its output with ruff (it warns and leaves the code unformatted without it).
RUFF_VERSION="0.17.6"
SPEC="$ROOT/openapi/keyward.openapi-3.0.json"

WORK="$(mktemp -d)"
# shellcheck source=scripts/lib/serve.sh
source "$ROOT/scripts/lib/serve.sh"
cleanup() {
    stop_keyward
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "python-client-check: openapi-python-client $GENERATOR_VERSION and ruff $RUFF_VERSION in a fresh venv"
python3 -m venv "$WORK/venv"
VENV="$WORK/venv/bin"
"$VENV/pip" install --quiet --disable-pip-version-check \
    "openapi-python-client==$GENERATOR_VERSION" "ruff==$RUFF_VERSION"

echo "python-client-check: generating the client from ${SPEC#"$ROOT/"}"
cat > "$WORK/generator.yml" <<'YAML'
project_name_override: keyward-api-client
package_name_override: keyward_api
YAML
# The generator's post-hooks (ruff) are found on PATH.
PATH="$VENV:$PATH" "$VENV/openapi-python-client" generate \
    --path "$SPEC" --config "$WORK/generator.yml" --output-path "$WORK/client" --fail-on-warning
"$VENV/pip" install --quiet --disable-pip-version-check "$WORK/client"

start_keyward python-client-check

echo "python-client-check: driving $BASE with the generated client"
"$VENV/python" - "$BASE" "$ROOT_KEY" <<'PY'
import sys

from keyward_api import AuthenticatedClient
from keyward_api.api.keys import create_key, list_keys, revoke_key, rotate_key
from keyward_api.api.status import status
from keyward_api.api.verify import verify
from keyward_api.models import (
    CreatedApiKey,
    CreateKeyRequest,
    ErrorBody,
    ErrorCode,
    KeyPage,
    KeyStatus,
    RotateKeyRequest,
    VerifyRequest,
    VerifyResponse,
)

base, root_key = sys.argv[1], sys.argv[2]
root = AuthenticatedClient(base_url=base, token=root_key, raise_on_unexpected_status=True)

r = create_key.sync_detailed(client=root, body=CreateKeyRequest(name="python", scopes=["keys:read"]))
assert r.status_code == 201, (r.status_code, r.content)
created = r.parsed
assert isinstance(created, CreatedApiKey), created
assert created.secret.startswith("kw_live_")
assert created.key.name == "python" and created.key.status == KeyStatus.ACTIVE

r = list_keys.sync_detailed(client=root)
assert r.status_code == 200, (r.status_code, r.content)
assert isinstance(r.parsed, KeyPage)
ids = [k.id for k in r.parsed.data]
assert created.key.id in ids, ids
assert all(created.secret not in str(k.to_dict()) for k in r.parsed.data), "lists are masked"

r = rotate_key.sync_detailed(created.key.id, client=root, body=RotateKeyRequest())
assert r.status_code == 201, (r.status_code, r.content)
rotated = r.parsed
assert isinstance(rotated, CreatedApiKey), rotated
assert rotated.secret != created.secret
assert rotated.key.rotated_from == created.key.id

r = revoke_key.sync_detailed(rotated.key.id, client=root)
assert r.status_code == 200, (r.status_code, r.content)
assert r.parsed.status == KeyStatus.REVOKED, r.parsed

revoked = AuthenticatedClient(base_url=base, token=rotated.secret, raise_on_unexpected_status=True)
r = status.sync_detailed(client=revoked)
assert r.status_code == 401, (r.status_code, r.content)
assert isinstance(r.parsed, ErrorBody), r.parsed
assert r.parsed.error.code.value == "KEY_REVOKED", r.parsed
assert r.parsed.error.request_id == r.headers["x-request-id"]

# POST /v1/verify, as the README shows it: a service holding a `keys:verify` key checks the key
# each of its requests presents.
service_key = create_key.sync(client=root, body=CreateKeyRequest(name="orders-service", scopes=["keys:verify"])).secret
presented = create_key.sync(client=root, body=CreateKeyRequest(name="customer", scopes=["orders:read"])).secret

keyward = AuthenticatedClient(base_url=base, token=service_key)  # scope keys:verify


def check(presented: str, scope: str) -> VerifyResponse:
    """The verdict on the key a request presented (X-API-Key or Authorization: Bearer)."""
    verdict = verify.sync(client=keyward, body=VerifyRequest(key=presented, scopes=[scope]))
    assert isinstance(verdict, VerifyResponse), verdict  # an ErrorBody: keyward refused the service's own key
    return verdict


verdict = check(presented, "orders:read")
assert verdict.valid, verdict
verdict = check(presented, "orders:write")
assert not verdict.valid and verdict.error.code == ErrorCode.INSUFFICIENT_SCOPE, verdict
assert verdict.error.status == 403, verdict
print("python-client-check: create, list, rotate, revoke, the revoked key's 401 and verify all behaved")
PY
