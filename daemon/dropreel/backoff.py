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


def retry_after_seconds(
    header: str | None, *, now: datetime | None = None, max_s: float = 300.0
) -> float | None:
    """Retry-After (seconds or an HTTP date) as seconds to wait, capped; None if unusable."""
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
    return min(value, max_s)
