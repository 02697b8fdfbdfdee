"""One ceiling on the request rate to a provider's API, whatever the provider answers.

A token bucket: pure arithmetic on a clock that is passed in, and a thin async gate over it
that every API request (not result downloads) passes through on its way out.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import httpx


class TokenBucket:
    """`rate_per_s` requests a second on average, at most `burst` at once. No I/O."""

    def __init__(self, rate_per_s: float, burst: float, *, now: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a bucket needs a positive rate and room for one request")
        self._rate = rate_per_s
        self._burst = burst
        self._tokens = burst
        self._at = now

    def reserve(self, now: float) -> float:
        """Take one token; the seconds to wait before using it (0 if there was one to spare)."""
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate


class RequestGate:
    """Holds each API request until the bucket allows it; downloads pass untouched.

    Reads and cancels wait in the HTTP client's request hook; the submitter waits its turn
    itself, before it claims the job.
    """

    def __init__(
        self,
        rate_per_s: float,
        *,
        api_prefixes: tuple[str, ...],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bucket = TokenBucket(rate_per_s, max(1.0, rate_per_s), now=monotonic())
        self._prefixes = api_prefixes
        self._monotonic = monotonic
        self.delayed = 0

    def limits(self, request: httpx.Request) -> bool:
        # POSTs take their turn before the job is marked as being submitted (`wait_turn`),
        # so that a kill while waiting never leaves an unsent job looking half-sent.
        return request.method != "POST" and str(request.url).startswith(self._prefixes)

    async def wait_turn(self) -> None:
        """Wait until one more request may go out."""
        delay = self._bucket.reserve(self._monotonic())
        if delay > 0:
            self.delayed += 1
            await anyio.sleep(delay)

    async def on_request(self, request: httpx.Request) -> None:
        """An httpx request hook: every request to the API waits its turn."""
        if self.limits(request):
            await self.wait_turn()
