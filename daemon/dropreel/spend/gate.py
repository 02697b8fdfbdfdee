"""The budget at the door of submission: each job's estimate (its model's price, from the
model catalogue the request check shares), the caps it must fit under, and the jobs held until
a period rolls over or the caps change."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio

from dropreel.config import BudgetSettings
from dropreel.providers.catalogue import ModelCatalogue
from dropreel.spend.budget import Caps, Go, Hold, Used, decide, periods
from dropreel.spend.estimate import job_estimate_usd
from dropreel.state.spending import Reservation

# Held jobs are looked at again at least this often.
_RECHECK_S = 60.0


def caps_of(settings: BudgetSettings) -> Caps:
    return Caps(settings.daily_usd, settings.monthly_usd, settings.unknown_price)


class Budget:
    """The caps in force (replaced on a reload), and the jobs they hold."""

    def __init__(self, settings: BudgetSettings, models: ModelCatalogue) -> None:
        self.caps = caps_of(settings)
        self._models = models
        self._held: dict[str, None] = {}
        self._changed = anyio.Event()

    def reconfigure(self, settings: BudgetSettings) -> None:
        """New caps (a reload): every held job is looked at again."""
        self.caps = caps_of(settings)
        self._changed.set()

    async def estimate(self, provider: str, request: Mapping[str, Any]) -> float | None:
        """The job's estimated cost in US dollars; None if it cannot be told (its model's
        price is unknown, or cannot be had now)."""
        model = request.get("model")
        if not isinstance(model, str) or not model:
            return None
        looked = await self._models.look(provider, model)
        return job_estimate_usd(looked.facts.pricing, request)

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
