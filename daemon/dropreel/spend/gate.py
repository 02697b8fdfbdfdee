"""The budget at the door of submission: each job's estimate (its model's price, cached per
model), the caps it must fit under, and the jobs held until a period rolls over or the caps
change."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

from dropreel.config import BudgetSettings
from dropreel.errors import DropreelError
from dropreel.providers.base import PriceList, Pricing
from dropreel.spend.budget import Caps, Go, Hold, Used, decide, periods
from dropreel.spend.estimate import job_estimate_usd
from dropreel.state.spending import Reservation

log = structlog.get_logger("dropreel.budget")

# A price that could not be fetched is asked for again after this long (or the TTL if less).
_RETRY_PRICE_S = 300.0
# Held jobs are looked at again at least this often.
_RECHECK_S = 60.0


def caps_of(settings: BudgetSettings) -> Caps:
    return Caps(settings.daily_usd, settings.monthly_usd, settings.unknown_price)


@dataclass(frozen=True, slots=True)
class _Cached:
    pricing: Pricing | None
    until: float


class Prices:
    """Each model's price, asked of its provider once per time-to-live."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._cached: dict[tuple[str, str], _Cached] = {}
        self._locks: dict[tuple[str, str], anyio.Lock] = {}

    async def pricing(self, provider: str, prices: PriceList | None, model: str) -> Pricing | None:
        """The model's price; None if its provider publishes none or cannot say now."""
        if prices is None or not model:
            return None
        key = (provider, model)
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:  # workers wanting the same price ask once
            cached = self._cached.get(key)
            if cached is not None and cached.until > time.monotonic():
                return cached.pricing
            keep_s = self.ttl_s
            try:
                found = await prices.pricing(model)
            except DropreelError as exc:
                log.warning(
                    "cannot learn the model's price; its jobs count as of unknown price",
                    provider=provider,
                    model=model,
                    error=str(exc) or type(exc).__name__,
                )
                found, keep_s = None, min(self.ttl_s, _RETRY_PRICE_S)
            self._cached[key] = _Cached(found, time.monotonic() + keep_s)
            return found


class Budget:
    """The caps in force (replaced on a reload), and the jobs they hold."""

    def __init__(self, settings: BudgetSettings) -> None:
        self.caps = caps_of(settings)
        self.prices = Prices(settings.pricing_ttl_s)
        self._held: dict[str, None] = {}
        self._changed = anyio.Event()

    def reconfigure(self, settings: BudgetSettings) -> None:
        """New caps (a reload): every held job is looked at again."""
        self.caps = caps_of(settings)
        self.prices.ttl_s = settings.pricing_ttl_s
        self._changed.set()

    async def estimate(
        self, provider: str, prices: PriceList | None, request: Mapping[str, Any]
    ) -> float | None:
        """The job's estimated cost in US dollars; None if it cannot be told."""
        model = request.get("model")
        pricing = await self.prices.pricing(
            provider, prices, model if isinstance(model, str) else ""
        )
        return job_estimate_usd(pricing, request)

    def reservation(
        self, estimate_usd: float | None, now: float, *, guarded: bool = True
    ) -> Reservation:
        """What a claim reserves, and the caps it must fit under now (none if not `guarded`)."""
        if not guarded:
            return Reservation(estimate_usd)
        period = periods(now)
        return Reservation(
            estimate_usd,
            self.caps.daily_usd,
            self.caps.monthly_usd,
            period.day_start,
            period.month_start,
        )

    def decide(self, estimate_usd: float | None, used: Used) -> Go | Hold:
        return decide(self.caps, estimate_usd, used)

    def hold(self, job_id: str) -> None:
        self._held[job_id] = None

    @property
    def held(self) -> int:
        return len(self._held)

    async def released(self) -> AsyncIterator[list[str]]:
        """The held jobs, handed back (oldest first) at once when the caps change, as a period
        rolls over, and at least once a minute (spend may have shrunk, a price come back)."""
        while True:
            with anyio.move_on_after(_until_next_look(time.time())):
                await self._changed.wait()
            self._changed = anyio.Event()
            jobs, self._held = list(self._held), {}
            if jobs:
                yield jobs


def _until_next_look(now: float) -> float:
    """Seconds to the next look at held jobs: a minute, or just past the next period's start."""
    return max(0.5, min(_RECHECK_S, periods(now).next_start - now + 0.5))
