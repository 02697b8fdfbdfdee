"""The budget decision: whether a job may be sent now, or is held, and why. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Literal

# Sums of floats are not exact: a job that lands on the cap to the cent still fits.
SLACK_USD = 1e-9


@dataclass(frozen=True, slots=True)
class Caps:
    """`[budget]`: the caps (None: no cap) and what a job of unknown price does."""

    daily_usd: float | None = None
    monthly_usd: float | None = None
    unknown_price: Literal["allow", "hold"] = "allow"

    @property
    def active(self) -> bool:
        return self.daily_usd is not None or self.monthly_usd is not None


@dataclass(frozen=True, slots=True)
class Periods:
    """Where today and this month began (local time), and when the next of them begins."""

    day_start: float
    month_start: float
    next_start: float

    @property
    def key(self) -> tuple[float, float]:
        return self.day_start, self.month_start


def periods(now: float) -> Periods:
    """The budget's periods around `now`: the local day and the local month."""
    # Naive local times, given their offset by astimezone(): midnight may have another
    # offset than `now` (the day the clocks change).
    today = datetime.fromtimestamp(now).date()
    day = datetime.combine(today, time()).astimezone()
    month = datetime.combine(today.replace(day=1), time()).astimezone()
    next_day = datetime.combine(today + timedelta(days=1), time()).astimezone()
    return Periods(day.timestamp(), month.timestamp(), next_day.timestamp())


@dataclass(frozen=True, slots=True)
class Used:
    """Spent (the generations' costs, estimated or reported) and reserved (POSTs not yet
    answered), in US dollars."""

    today_usd: float
    month_usd: float


@dataclass(frozen=True, slots=True)
class Go:
    pass


@dataclass(frozen=True, slots=True)
class Hold:
    """Why the job waits, with the figures."""

    reason: str


def decide(caps: Caps, estimate_usd: float | None, used: Used) -> Go | Hold:
    """Whether a job of `estimate_usd` may be sent now, given what is already used."""
    if not caps.active:
        return Go()
    if estimate_usd is None:
        if caps.unknown_price == "hold":
            return Hold(
                'its price is unknown and budget.unknown_price = "hold"; it goes ahead once '
                "that setting changes"
            )
        return Go()
    for cap, spent, period, rolls in (
        (caps.daily_usd, used.today_usd, "today", "the day rolls over"),
        (caps.monthly_usd, used.month_usd, "this month", "the month rolls over"),
    ):
        if cap is None or spent + estimate_usd <= cap + SLACK_USD:
            continue
        which = "daily" if period == "today" else "monthly"
        if estimate_usd > cap + SLACK_USD:
            return Hold(
                f"this job's ${estimate_usd:.2f} alone is over the {which} cap of ${cap:.2f}; "
                "it goes ahead once the cap is raised"
            )
        return Hold(
            f"${spent:.2f} spent or reserved {period} + ${estimate_usd:.2f} for this job would "
            f"cross the {which} cap of ${cap:.2f}; it goes ahead when {rolls} or the cap is "
            "raised"
        )
    return Go()
