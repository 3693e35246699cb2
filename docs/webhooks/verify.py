"""Receives keyward webhooks, with Python's standard library only.

    KEYWARD_WEBHOOK_SECRET=whsec_... python3 verify.py   # listens on 127.0.0.1:8000
"""

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

TOLERANCE_SECONDS = 5 * 60


class WebhookVerificationError(Exception):
    """The delivery is not from keyward, or not from now: answer 400 and drop it."""


def _b64decode(text: str) -> bytes:
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("not base64") from None
    if base64.b64encode(decoded).decode() != text:
        raise WebhookVerificationError("not canonical base64")
    return decoded


def verify(secret: str, headers, body: bytes, now: float | None = None) -> None:
    """Raises WebhookVerificationError unless the raw `body` and `headers` (any mapping with
    .get, such as http.server's) are a delivery signed with `secret` (whsec_...) within the
    last or next five minutes."""
    if not secret.startswith("whsec_"):
        raise ValueError("a keyward webhook secret starts with whsec_")
    key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    msg_id = headers.get("webhook-id") or ""
    timestamp = headers.get("webhook-timestamp") or ""
    signature_header = headers.get("webhook-signature") or ""
    if not msg_id:
        raise WebhookVerificationError("missing webhook-id")
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise WebhookVerificationError("webhook-timestamp is not whole unix seconds")

    entries = signature_header.split()
    if not entries:
        raise WebhookVerificationError("missing webhook-signature")
    candidates = []
    for entry in entries:
        version, comma, value = entry.partition(",")
        if not (version and comma and value):
            raise WebhookVerificationError("malformed webhook-signature")
        if version == "v1":
            tag = _b64decode(value)
            if len(tag) != 32:
                raise WebhookVerificationError("a v1 signature has 32 bytes")
            candidates.append(tag)

    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        raise WebhookVerificationError("webhook-timestamp is too old or too new")

    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = hmac.new(key, signed, hashlib.sha256).digest()
    # compare_digest takes the same time wherever the bytes differ; every candidate is compared.
    matches = [hmac.compare_digest(expected, tag) for tag in candidates]
    if not any(matches):
        raise WebhookVerificationError("no signature matches")


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            verify(os.environ["KEYWARD_WEBHOOK_SECRET"], self.headers, body)
        except WebhookVerificationError as e:
            self.send_response(400)
            self.end_headers()
            self.wfile.write(str(e).encode())
            return
        event = json.loads(body)  # parse only after the raw bytes are verified
        # De-duplicate on webhook-id: a retried or resent event keeps its id.
        print(self.headers["webhook-id"], event["type"], flush=True)
        self.send_response(204)
        self.end_headers()


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    HTTPServer(("127.0.0.1", port), Receiver).serve_forever()
