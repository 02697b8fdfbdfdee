"""Keeping secrets out of everything dropreel writes: one process-wide set of values to mask.

The provider may echo our key back (error bodies quoting request headers); whatever it sends
is text we store, log and hand to hooks, so every such path passes through `redact`.
"""

from __future__ import annotations

from collections.abc import Iterable

MASK = "[redacted]"
# Shorter values would mask ordinary words; no real API key is this short.
_MIN_SECRET_CHARS = 8

_secrets: set[str] = set()


def remember_secret(value: str) -> None:
    """Mask this value (and its surrounding whitespace-free form) from now on."""
    value = value.strip()
    if len(value) >= _MIN_SECRET_CHARS:
        _secrets.add(value)


def forget_secrets() -> None:
    """Drop every remembered secret (tests start clean)."""
    _secrets.clear()


def redact(text: str) -> str:
    """`text` with every remembered secret masked."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def contains_secret(text: str, extra: Iterable[str] = ()) -> bool:
    """Whether `text` holds a remembered secret (or one of `extra`)."""
    return any(s and s in text for s in (*_secrets, *extra))
