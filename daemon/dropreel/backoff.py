"""Capped, jittered exponential backoff. Pure: the random source is passed in."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def backoff_delay(
    attempt: int,
    *,
    initial_s: float,
    max_s: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Delay before retry number `attempt` (0-based): full jitter over a capped exponential."""
    ceiling = min(max_s, initial_s * 2.0 ** min(attempt, 32))
    # Half fixed, half random: never zero (no hot loop), never in lockstep with other clients.
    return ceiling / 2 + rand() * ceiling / 2


# However a server words it ("Retry-After: 0", a date in the past), never come back sooner.
MIN_RETRY_AFTER_S = 1.0


def retry_after_seconds(
    header: str | None,
    *,
    now: datetime | None = None,
    min_s: float = MIN_RETRY_AFTER_S,
    max_s: float = 300.0,
) -> float | None:
    """Retry-After (seconds or an HTTP date) as seconds to wait, kept within [min_s, max_s];
    None if unusable."""
    if header is None:
        return None
    try:
        value = float(header.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        reference = now or datetime.now(UTC)
        value = max(0.0, (when - reference).total_seconds())
    if value != value or value < 0:  # NaN or negative
        return None
    return min(max(value, min_s), max_s)
