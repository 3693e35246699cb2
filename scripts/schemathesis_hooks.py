"""Schemathesis hooks for scripts/schemathesis-check.sh.

Three jobs, each for a reason the spec cannot carry:

1. Keep the run's own credentials alive. Schemathesis learns ids from responses (the key list,
   `GET /v1/status`, audit events) and feeds them to other operations, so left alone it soon
   revokes, narrows or rotates the root key it authenticates with, or puts its workspace on a plan
   without API access, and every later case is a 401/403 that tests nothing. Calls that would
   change the caller's own key, workspace or plan are pointed at a fresh id instead (a 404, or a
   new plan): every other operation and id is left to the fuzzer.
2. Rules JSON Schema cannot state, so that a schema-valid request is also a valid one: `expiresAt`
   in the future, a rate-limit window's `limit` at most 1,000,000 x `periodSecs`, a `planId` that
   names an existing plan, label and resource lengths counted in UTF-8 bytes (the schema can only
   count characters), `ipAllowlist` entries that are IP addresses or CIDR ranges without host
   bits and a `clientIp` that is an address (the server parses them; a pattern cannot), a
   refill's `day` only on a monthly refill. Values breaking only those rules are moved inside them; values the schema
   already rejects are left alone.
3. Count what the run sent: cases in all, and how many got past authentication, written as JSON
   to $KEYWARD_ST_STATS when the run ends. `POST /v1/leaks/github` is fuzzed too, but it
   authenticates by GitHub's signature, which no fuzzer can make: its cases (all 401
   `INVALID_SIGNATURE`, checked like any answer) do not count towards getting past
   authentication; tests/api/leaks.rs sends it signed reports.
"""

import atexit
import ipaddress
import collections
import json
import os
import re
import threading
import uuid
from datetime import datetime, timedelta, timezone

import schemathesis

KEY_ID = os.environ["KEYWARD_ST_KEY_ID"]
WORKSPACE_ID = os.environ["KEYWARD_ST_WORKSPACE_ID"]
PLAN_ID = os.environ["KEYWARD_ST_PLAN_ID"]
AUTHORIZATION = "Bearer " + os.environ["KEYWARD_ST_ROOT_KEY"]
STATS = os.environ["KEYWARD_ST_STATS"]

# Operations that change the key in their path.
KEY_ACTIONS = {
    ("PATCH", "/v1/keys/{id}"),
    ("DELETE", "/v1/keys/{id}"),
    ("POST", "/v1/keys/{id}/activate"),
    ("POST", "/v1/keys/{id}/deactivate"),
    ("POST", "/v1/keys/{id}/revoke"),
    ("POST", "/v1/keys/{id}/rotate"),
}
RFC3339 = re.compile(r"^(\d{4})-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
PLAN_SLUG = re.compile(r"^[a-z0-9_-]{1,64}$")
# Operations authenticated by a signature instead of a key (`x-keyward-authentication`).
SIGNED_PATHS = {"/v1/leaks/github"}
DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")
U32_MAX = 2**32 - 1
MAX_PERIOD = 31 * 24 * 3600
PER_SECOND = 1_000_000

_lock = threading.Lock()
_known_plans = {PLAN_ID}
_seen_digests = set()
_stats = {"requests": 0, "with_root_key": 0, "past_auth": 0, "statuses": collections.Counter(), "redirected": 0}


def _in_the_past(value):
    match = RFC3339.match(value) if isinstance(value, str) else None
    if not match:
        return False
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        # Years 0000 and the like: valid RFC 3339, long gone.
        return int(match.group(1)) <= datetime.now(timezone.utc).year
    return when <= datetime.now(timezone.utc) + timedelta(minutes=1)


def _fix_windows(windows):
    if not isinstance(windows, list):
        return
    for w in windows:
        if not isinstance(w, dict):
            continue
        # The server reads whole floats (60.0) as the integers they equal, as JSON Schema does.
        limit, period = _whole(w.get("limit")), _whole(w.get("periodSecs"))
        if limit is not None and period is not None and 1 <= limit <= U32_MAX and 1 <= period <= MAX_PERIOD:
            w["limit"] = min(limit, PER_SECOND * period)


def _whole(n):
    """`n` as an int when it is an integer or a whole float, else None."""
    if type(n) is int:
        return n
    if type(n) is float and n.is_integer():
        return int(n)
    return None


def _fit_bytes(text, max_chars, max_bytes):
    """`text` cut to `max_bytes` of UTF-8 when it is within `max_chars` but over `max_bytes`."""
    if not isinstance(text, str) or len(text) > max_chars:
        return text
    while len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        text = text[:-1]
    return text


def _fix_body(case):
    body = case.body
    if not isinstance(body, dict):
        return
    _fix_fields(body)
    # `POST /v1/keys/import`: every row holds the settings of a new key.
    # A digest may be imported once: one given before (in this call or an earlier one) is
    # replaced by a fresh one, so a schema-valid import is not a 409.
    rows = body.get("keys")
    if isinstance(rows, list):
        for row in rows:
            if isinstance(row, dict):
                _fix_fields(row)
                digest = row.get("digest")
                if isinstance(digest, str) and DIGEST.match(digest):
                    with _lock:
                        if digest.lower() in _seen_digests:
                            digest = row["digest"] = uuid.uuid4().hex + uuid.uuid4().hex
                        _seen_digests.add(digest.lower())


IP_SHAPE = re.compile(r"^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$")


def _is_net(value):
    if not IP_SHAPE.match(value):
        return False
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        return False
    return True


def _fix_fields(body):
    allow = body.get("ipAllowlist")
    if isinstance(allow, list) and all(isinstance(e, str) for e in allow):
        body["ipAllowlist"] = [e if _is_net(e) else "203.0.113.0/24" for e in allow]
    ip = body.get("clientIp")
    if isinstance(ip, str) and not (_is_net(ip) and "/" not in ip):
        body["clientIp"] = "203.0.113.7"
    refill = body.get("refill")
    if isinstance(refill, dict) and refill.get("interval") == "daily":
        refill.pop("day", None)
    if _in_the_past(body.get("expiresAt")):
        body["expiresAt"] = (datetime.now(timezone.utc) + timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for field in ("rateLimit", "keyRateLimit"):
        _fix_windows(body.get(field))
    labels = body.get("metadata")
    if isinstance(labels, dict):
        fitted = {_fit_bytes(k, 64, 64): _fit_bytes(v, 512, 512) for k, v in labels.items()}
        if len(fitted) == len(labels) and all(fitted):
            body["metadata"] = fitted
    resources = body.get("resources")
    if isinstance(resources, list):
        fitted = [_fit_bytes(r, 200, 200) for r in resources]
        if all(fitted):
            body["resources"] = fitted
    plan = body.get("planId")
    if isinstance(plan, str) and PLAN_SLUG.match(plan):
        with _lock:
            known = plan in _known_plans
        if not known:
            body["planId"] = PLAN_ID


def _protect(case):
    method, path = case.method.upper(), case.operation.path
    params = case.path_parameters or {}
    target = str(params.get("id", ""))
    if (method, path) in KEY_ACTIONS and target.lower() == KEY_ID.lower():
        params["id"] = str(uuid.uuid4())
    elif (method, path) == ("PATCH", "/v1/workspaces/{id}") and target.lower() == WORKSPACE_ID.lower():
        params["id"] = str(uuid.uuid4())
    elif (method, path) == ("PUT", "/v1/plans/{id}") and target == PLAN_ID:
        params["id"] = "st-" + uuid.uuid4().hex[:12]
    else:
        return
    with _lock:
        _stats["redirected"] += 1


@schemathesis.hook
def before_call(context, case, kwargs):
    _protect(case)
    _fix_body(case)


@schemathesis.hook
def after_call(context, case, response):
    status = response.status_code
    sent = response.request.headers.get("Authorization")
    with _lock:
        _stats["requests"] += 1
        _stats["statuses"][str(status)] += 1
        # GitHub's leak reports authenticate by a signature no fuzzer can make: every case is a
        # 401 INVALID_SIGNATURE (checked for conformance like any answer), never past auth.
        signed = case.operation.path in SIGNED_PATHS
        if sent == AUTHORIZATION and not signed:
            _stats["with_root_key"] += 1
            if status != 401:
                _stats["past_auth"] += 1
        if (case.method.upper(), case.operation.path) == ("PUT", "/v1/plans/{id}") and status == 200:
            _known_plans.add(str(case.path_parameters.get("id")))


@atexit.register
def _write_stats():
    with _lock:
        stats = dict(_stats, statuses=dict(sorted(_stats["statuses"].items())))
    with open(STATS, "w") as f:
        json.dump(stats, f)
