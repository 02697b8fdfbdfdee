"""The jobs a person looks at (`status`, and a live view): which to show, each with its
short id and where it stands, and what was spent today."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, time

from dropreel.errors import CommandError
from dropreel.ops.shortid import short_ids
from dropreel.ops.standing import JobStanding, Standing, standing
from dropreel.state.records import GenerationRow, JobRow
from dropreel.state.store import Store


@dataclass(frozen=True, slots=True)
class ShownJob:
    job: JobRow
    generations: Sequence[GenerationRow]
    short_id: str
    standing: JobStanding


@dataclass(frozen=True, slots=True)
class Spend:
    """What today's generations cost, as far as their providers said."""

    known_usd: float
    unknown: int  # generations whose provider gave no cost
    estimated: bool  # some of the known cost is still an estimate

    def __str__(self) -> str:
        if self.unknown and not self.known_usd:
            return "unknown"
        known = f"${self.known_usd:.2f}" + (" (partly estimated)" if self.estimated else "")
        plural = "s" if self.unknown > 1 else ""
        return known + (
            f", {self.unknown} generation{plural} of unknown cost" if self.unknown else ""
        )


async def jobs_to_show(
    store: Store, *, since: float | None = None, states: Collection[Standing] = ()
) -> list[ShownJob]:
    """The jobs accepted since `since` (all without it) that stand in one of `states` (any
    without them), oldest first."""
    rows = await store.jobs_with_generations(since=since)
    return shown(rows, await store.job_ids(), states)


async def jobs_on_watch(store: Store, *, finished_since: float) -> list[ShownJob]:
    """The jobs a live view shows: every one not finished, and those finished since
    `finished_since`; oldest first."""
    rows = await store.jobs_open_or_finished_since(finished_since)
    return shown(rows, await store.job_ids())


def shown(
    rows: Sequence[tuple[JobRow, Sequence[GenerationRow]]],
    all_ids: Sequence[str],
    states: Collection[Standing] = (),
) -> list[ShownJob]:
    """Each job with its short id (unique among `all_ids`) and its standing; only those in
    `states`, if any are given."""
    shorts = short_ids(all_ids)
    found = []
    for job, generations in rows:
        where = standing(job, generations)
        if not states or where.state in states:
            found.append(ShownJob(job, generations, shorts.get(job.job_id, job.job_id), where))
    return found


def spend(costs: Sequence[tuple[float | None, bool]]) -> Spend:
    """The sum of the known costs (and whether any is an estimate), and how many are
    unknown, of (cost, is estimate) pairs."""
    known = [(cost, estimate) for cost, estimate in costs if cost is not None]
    return Spend(
        round(sum(cost for cost, _ in known), 6),
        len(costs) - len(known),
        any(estimate for _, estimate in known),
    )


def counts(jobs: Sequence[ShownJob]) -> dict[Standing, int]:
    """How many jobs stand in each state, in the order a person should look at them."""
    return {s: n for s in Standing if (n := sum(1 for j in jobs if j.standing.state is s))}


def start_of_day(now: float) -> float:
    """Local midnight before `now`: where "today" begins."""
    today = datetime.fromtimestamp(now).astimezone()
    return datetime.combine(today.date(), time(), tzinfo=today.tzinfo).timestamp()


_AGO = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_since(text: str, *, now: float) -> float:
    """`--since`: an age (90s, 15m, 2h, 1d, 1w) or a date or time (2026-12-01,
    2026-12-01T14:30, local unless it says otherwise), as a timestamp."""
    ago = _AGO.fullmatch(text.strip())
    if ago is not None:
        return now - float(ago.group(1)) * _UNIT_S[ago.group(2)]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(
            f"--since {text!r}: not an age or a date; give 90m, 2h, 1d or 2026-12-01"
        ) from None
    return when.astimezone().timestamp() if when.tzinfo is None else when.timestamp()


def parse_states(names: Sequence[str]) -> frozenset[Standing]:
    """`--state` values, each one of the states `status` shows."""
    known = {s.value: s for s in Standing}
    wrong = [n for n in names if n not in known]
    if wrong:
        raise CommandError(f"--state {wrong[0]!r}: not a state; use one of {', '.join(known)}")
    return frozenset(known[n] for n in names)
