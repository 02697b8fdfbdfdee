"""Keeping secrets out of everything dropreel writes: one process-wide set of values to mask.

The provider may echo our key back (error bodies quoting request headers); whatever it sends
is text we store, log and hand to hooks, so every such path passes through `redact`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import overload

MASK = "[redacted]"
# Shorter values would mask ordinary words; no real API key is this short.
_MIN_SECRET_CHARS = 8

# Failure text dropreel keeps or hands on: a provider's 128 KiB error page is cut to this.
MAX_STORED_CHARS = 4096

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


@overload
def stored_text(text: str, limit: int = MAX_STORED_CHARS) -> str: ...
@overload
def stored_text(text: None, limit: int = MAX_STORED_CHARS) -> None: ...
def stored_text(text: str | None, limit: int = MAX_STORED_CHARS) -> str | None:
    """`text` fit to keep, log or pass to a hook: secrets masked, at most `limit` characters
    (and a note of how many more there were)."""
    if text is None:
        return None
    text = redact(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"
