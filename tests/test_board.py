"""Which jobs `status` shows (`--state`, `--since`), and what today cost."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from dropreel.errors import CommandError
from dropreel.lifecycle import JobState
from dropreel.ops.board import (
    Spend,
    counts,
    parse_since,
    parse_states,
    shown,
    spend,
    start_of_day,
)
from dropreel.ops.standing import Standing
from dropreel.state.records import GenerationRow, JobRow

from .rows import job_row
from .zones import in_zone

NOW = 1_764_000_000.0  # 2025-11-24T16:00:00Z


@pytest.fixture
def in_paris() -> Iterator[None]:
    with in_zone("Europe/Paris"):
        yield


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - 90),
        ("15m", NOW - 900),
        ("2h", NOW - 7200),
        ("1.5h", NOW - 5400),
        ("1d", NOW - 86_400),
        ("1w", NOW - 604_800),
        ("2025-11-24", datetime.fromisoformat("2025-11-24T00:00:00+01:00").timestamp()),
        ("2025-11-24T14:30", datetime.fromisoformat("2025-11-24T14:30:00+01:00").timestamp()),
        ("2025-11-24T14:30Z", datetime.fromisoformat("2025-11-24T14:30:00+00:00").timestamp()),
    ],
)
def test_since_takes_an_age_or_a_local_date(in_paris: None, text: str, expected: float) -> None:
    assert parse_since(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["", "2 hours", "-2h", "yesterday", "2025-13-01"])
def test_a_since_that_is_neither_is_refused_in_one_line(text: str) -> None:
    with pytest.raises(CommandError, match=r"^--since .*: not an age or a date; give 90m"):
        parse_since(text, now=NOW)


def test_states_are_the_ones_status_shows() -> None:
    assert parse_states(["blocked", "parked", "blocked"]) == {Standing.BLOCKED, Standing.PARKED}
    assert parse_states([]) == frozenset()
    with pytest.raises(CommandError, match=r"^--state 'accepted': not a state; use one of "):
        parse_states(["accepted"])


def test_today_starts_at_local_midnight(in_paris: None) -> None:
    assert start_of_day(NOW) == datetime.fromisoformat("2025-11-24T00:00:00+01:00").timestamp()


@pytest.mark.parametrize(
    ("costs", "expected", "words"),
    [
        ([], Spend(0.0, 0, estimated=False), "$0.00"),
        ([(1.2, False), (0.4, True)], Spend(1.6, 0, estimated=True), "$1.60 (partly estimated)"),
        (
            [(1.2, False), (None, False)],
            Spend(1.2, 1, estimated=False),
            "$1.20, 1 generation of unknown cost",
        ),
        ([(None, False), (None, False)], Spend(0.0, 2, estimated=False), "unknown"),
    ],
)
def test_spend_sums_what_is_known_and_says_what_is_not(
    costs: list[tuple[float | None, bool]], expected: Spend, words: str
) -> None:
    assert spend(costs) == expected
    assert str(spend(costs)) == words


def test_a_state_filter_keeps_the_jobs_standing_so_and_short_ids_stay_unique_among_all() -> None:
    rows: list[tuple[JobRow, list[GenerationRow]]] = [
        (job_row(job_id="x1aaaa", state=JobState.NEEDS_ATTENTION, error="lost"), []),
        (job_row(job_id="x2baaaa", state=JobState.FAILED, error="refused"), []),
        (job_row(job_id="x3cccc", state=JobState.FAILED, error="refused"), []),
    ]
    ids = [job.job_id for job, _ in rows]
    failed = shown(rows, ids, {Standing.FAILED})
    assert [(j.short_id, j.standing.state) for j in failed] == [
        ("baaaa", Standing.FAILED),  # "aaaa" alone would be the parked job's too
        ("cccc", Standing.FAILED),
    ]
    assert counts(shown(rows, ids)) == {Standing.PARKED: 1, Standing.FAILED: 2}
