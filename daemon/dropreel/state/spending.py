"""The SQL of money: what is spent or reserved since a moment, and the budget's guard on a
submission claim. Kept apart from the store's other statements."""

from __future__ import annotations

from dataclasses import dataclass

from dropreel.spend.budget import SLACK_USD

# Spent or reserved since a moment (one parameter, given twice): the generations' costs
# (reported or estimated), and the estimates of jobs whose POST may have created generations
# not recorded yet (being sent, or parked with its answer lost).
USED_SINCE = (
    "((SELECT COALESCE(SUM(cost_usd), 0) FROM generations WHERE enqueued_at >= ?)"
    " + (SELECT COALESCE(SUM(reserved_usd), 0) FROM jobs"
    " WHERE state IN ('submitting', 'needs_attention') AND post_started_at >= ?))"
)

# A cap (given twice) that the reservation (given once) must fit under with what is used.
_FITS = f"(? IS NULL OR {USED_SINCE} + ? <= ? + {SLACK_USD!r})"

# The guard a submission claim carries when a budget is set: both caps must hold.
CLAIM_GUARD = f" AND {_FITS} AND {_FITS}"


@dataclass(frozen=True, slots=True)
class Reservation:
    """A job's estimate, reserved as its POST is claimed; the caps it must fit under."""

    estimate_usd: float | None
    daily_usd: float | None = None
    monthly_usd: float | None = None
    day_start: float = 0.0
    month_start: float = 0.0

    @property
    def guarded(self) -> bool:
        capped = self.daily_usd is not None or self.monthly_usd is not None
        return capped and self.estimate_usd is not None

    def guard_params(self) -> tuple[float | None, ...]:
        """The parameters of CLAIM_GUARD, in order."""
        params: tuple[float | None, ...] = ()
        for cap, since in ((self.daily_usd, self.day_start), (self.monthly_usd, self.month_start)):
            params += (cap, since, since, self.estimate_usd, cap)
        return params


SPEND_ROWS = (
    "SELECT g.enqueued_at, j.provider, json_extract(j.request, '$.model') AS model,"
    " g.cost_usd, g.cost_is_estimate FROM generations g JOIN jobs j USING (job_id)"
    " WHERE g.enqueued_at >= ? ORDER BY g.enqueued_at"
)
