"""The Python half of scripts/webhook-verify-check.sh (standard library only).

    check.py doc DOC ROOT FILE...        each FILE (relative to ROOT) is quoted verbatim in DOC
    check.py sync DOC ROOT               rewrites DOC's verbatim blocks from their files
    check.py vectors VECTORS VERIFY_PY   verify.py's verify() gives every vector its verdict
    check.py serve VECTORS -- CMD...     the receiver CMD starts, takes a fresh delivery (204) and
                                         refuses a tampered one (400)
"""

import base64
import hashlib
import hmac
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


def fail(message):
    print(f"webhook-verify-check: {message}", file=sys.stderr)
    sys.exit(1)


# A file is quoted as `<!-- verbatim: PATH -->`, then a fenced block holding exactly it.
VERBATIM = re.compile(r"(<!-- verbatim: (\S+) -->\n```[a-z]*\n)(.*?)(^```$)", re.S | re.M)


def sync_doc(doc_path, root):
    doc = open(doc_path, encoding="utf-8").read()
    quote = lambda m: m[1] + open(os.path.join(root, m[2]), encoding="utf-8").read() + m[4]
    with open(doc_path, "w", encoding="utf-8") as f:
        f.write(VERBATIM.sub(quote, doc))


def check_doc(doc_path, root, files):
    doc = open(doc_path, encoding="utf-8").read()
    quoted = {m[2]: m[3] for m in VERBATIM.finditer(doc)}
    for path in files:
        if path not in quoted:
            fail(f"{doc_path} does not quote {path} (a `<!-- verbatim: {path} -->` block)")
        actual = open(os.path.join(root, path), encoding="utf-8").read()
        if quoted[path] != actual:
            fail(
                f"the block quoting {path} in {doc_path} differs from the file; copy it again with"
                f" python3 scripts/webhook-verify/check.py sync {doc_path} {root}"
            )
        print(f"webhook-verify-check: {path} is quoted verbatim")


def load_vectors(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)["vectors"]


def headers_of(case):
    return {
        "webhook-id": case["id"],
        "webhook-timestamp": case["timestamp"],
        "webhook-signature": case["signature"],
    }


def check_vectors(vectors_path, verify_py):
    spec = importlib.util.spec_from_file_location("keyward_webhook_verify", verify_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    passed = failed = 0
    for case in load_vectors(vectors_path):
        try:
            module.verify(case["secret"], headers_of(case), case["body"].encode(), now=case["now"])
            accepted, reason = True, "accepted"
        except module.WebhookVerificationError as e:
            accepted, reason = False, f"refused: {e}"
        if accepted == case["valid"]:
            passed += 1
        else:
            failed += 1
            print(f"wrong verdict: {case['name']}: {reason}", file=sys.stderr)
    print(f"verify.py: {passed} passed, {failed} failed")
    if failed or not passed:
        sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, headers, body):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/webhooks", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def check_serve(vectors_path, command):
    """A fresh delivery, signed here as keyward signs (the vectors pin that), must get 204."""
    case = next(c for c in load_vectors(vectors_path) if c["valid"] and "\"type\"" in c["body"])
    key = base64.b64decode(case["secret"].removeprefix("whsec_"))
    timestamp = str(int(time.time()))
    body = case["body"].encode()
    tag = hmac.new(key, f"{case['id']}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    headers = {
        "Content-Type": "application/json",
        "webhook-id": case["id"],
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(tag).decode(),
    }
    port = free_port()
    env = dict(os.environ, KEYWARD_WEBHOOK_SECRET=case["secret"], PORT=str(port))
    receiver = subprocess.Popen(command, env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if receiver.poll() is not None or time.monotonic() > deadline:
                    fail(f"the receiver {command} did not listen on port {port}")
                time.sleep(0.1)
        got = post(port, headers, body)
        if got != 204:
            fail(f"{command} answered {got} to a fresh signed delivery, not 204")
        got = post(port, headers, body.replace(b"revoked", b"created"))
        if got != 400:
            fail(f"{command} answered {got} to a tampered delivery, not 400")
        print(f"webhook-verify-check: {' '.join(command)} answers 204 to a signed delivery, 400 to a tampered one")
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)


def main(argv):
    if len(argv) == 4 and argv[1] == "sync":
        sync_doc(argv[2], argv[3])
    elif len(argv) >= 4 and argv[1] == "doc":
        check_doc(argv[2], argv[3], argv[4:])
    elif len(argv) == 4 and argv[1] == "vectors":
        check_vectors(argv[2], argv[3])
    elif len(argv) >= 5 and argv[1] == "serve" and argv[3] == "--":
        check_serve(argv[2], argv[4:])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main(sys.argv)
