"""A webhook receiver on loopback that checks each request's signature itself, from the
Standard Webhooks spec (not with dropreel's signer), and answers as a test scripts it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET = "whsec_" + base64.b64encode(b"dropreel-test-webhook-key-0123456789").decode()


@dataclass
class Received:
    webhook_id: str
    timestamp: int
    body: bytes
    signed: bool  # the signature verifies with the secret

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    url: str = ""
    # Statuses for the next requests, one each; 204 once they run out.
    answers: list[int] = field(default_factory=list)
    # Seconds to wait before answering the next requests, one each.
    delays: list[float] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)


def verifies(secret: str, webhook_id: str, timestamp: str, body: bytes, signatures: str) -> bool:
    """The spec's check: HMAC-SHA256 keyed with the base64-decoded secret (after `whsec_`)
    over "{id}.{timestamp}.{body}", base64, against any of the space-separated `v1,` ones."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = webhook_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    given = [s.split(",", 1)[1] for s in signatures.split() if s.startswith("v1,")]
    return any(hmac.compare_digest(expected, s) for s in given)


@contextmanager
def receiving(secret: str = SECRET) -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            webhook_id = self.headers.get("webhook-id", "")
            stamp = self.headers.get("webhook-timestamp", "")
            signed = verifies(
                secret, webhook_id, stamp, body, self.headers.get("webhook-signature", "")
            )
            receiver.received.append(Received(webhook_id, int(stamp or 0), body, signed))
            status = receiver.answers.pop(0) if receiver.answers else 204
            if receiver.delays:
                time.sleep(receiver.delays.pop(0))
            self.send_response(status if signed else 401)
            reply = b"" if status == 204 else f"receiver says {status}".encode()
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            try:
                self.wfile.write(reply)
            except BrokenPipeError:
                pass  # the sender gave up waiting (a time-out under test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/reels?token=t0p"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
