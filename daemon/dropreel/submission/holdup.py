"""Why an accepted job is not submitted yet, in words that `status` reads back. No I/O."""

from __future__ import annotations

import enum

from dropreel.errors import AuthRefused, NotSent, ReadStalled, RetryableProviderError


class Holdup(enum.StrEnum):
    THROTTLED = "throttled"  # 429 or 503: come back later
    KEY_REFUSED = "key refused"  # 401 or 403
    UNREACHABLE = "provider unreachable"  # no connection, or no answer in time
    FAILING = "provider failing"  # 5xx or an unreadable answer, resent under its key
    BUDGET = "budget"  # held: its estimate would cross a budget cap


_WORDS = frozenset(holdup.value for holdup in Holdup)


def holdup_of(exc: Exception) -> Holdup:
    """What a failed POST that will be sent again means for its job."""
    if isinstance(exc, RetryableProviderError):
        return Holdup.THROTTLED
    if isinstance(exc, AuthRefused):
        return Holdup.KEY_REFUSED
    if isinstance(exc, NotSent | ReadStalled):
        return Holdup.UNREACHABLE
    return Holdup.FAILING


def holdup_text(exc: Exception) -> str:
    """The job's error while it waits to be sent again: the holdup, then the failure."""
    return f"{holdup_of(exc).value}: {exc or type(exc).__name__}"


def budget_text(reason: str) -> str:
    """The job's error while the budget holds it."""
    return f"{Holdup.BUDGET.value}: {reason}"


def read_holdup(error: str | None) -> tuple[Holdup, str] | None:
    """The holdup and the failure behind it, from a job's stored error; None if it is not
    one (an error stored by an older dropreel, say)."""
    word, separated, rest = (error or "").partition(": ")
    if not separated or word not in _WORDS:
        return None
    return Holdup(word), rest
