"""Webhooks as Standard Webhooks signs them (standardwebhooks.com): the secret, the message id
kept across retries, the body and its signature. Pure."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping

from dropreel.hooks.run import hook_payload

# The prefix Standard Webhooks secrets carry, not a secret itself.
SECRET_PREFIX = "whsec_"  # noqa: S105


def parse_secret(text: str) -> bytes:
    """The signing key in a `whsec_<base64>` secret; ValueError saying why not (never
    quoting the secret)."""
    text = text.strip()
    if not text.startswith(SECRET_PREFIX):
        raise ValueError(f'does not start with "{SECRET_PREFIX}"')
    try:
        key = base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f'is not "{SECRET_PREFIX}" followed by base64') from None
    if len(key) < 16:
        raise ValueError(f"holds {len(key)} bytes; a secret needs at least 16")
    return key


def message_id(generation_id: str) -> str:
    """The webhook-id of a generation's delivery: the same on every retry and rerun, so a
    receiver can tell a repeat from a new message."""
    return "msg_" + hashlib.sha256(generation_id.encode()).hexdigest()[:32]


def webhook_body(fields: Mapping[str, str]) -> bytes:
    """The command hook's stdin fields as one compact JSON object."""
    return json.dumps(hook_payload(fields), ensure_ascii=False, separators=(",", ":")).encode()


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def webhook_headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt: its time is when it is sent, its id that of the delivery."""
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, msg_id, timestamp, body),
    }
