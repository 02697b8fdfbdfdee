"""Money, pure: a model's price from Oxen's answer, a job's estimate, the budget's decision
and its periods; each a table of cases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from dropreel.errors import MalformedAnswer
from dropreel.providers.base import Pricing
from dropreel.providers.oxen.model import parse_pricing
from dropreel.spend.budget import Caps, Go, Hold, Used, decide, periods
from dropreel.spend.estimate import each_usd, job_estimate_usd
from dropreel.spend.report import SpendRow, spend_lines, spend_table

from .zones import in_zone

SORA = Pricing(0.30, 0.50)
PER_SECOND = {"method": "per_video_output_second", "cost_per_second": 0.3}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"model": {"pricing": PER_SECOND}}, Pricing(0.3)),
        ({"pricing": PER_SECOND}, Pricing(0.3)),  # the model object bare
        ({"model": {"data": {"pricing": PER_SECOND}}}, Pricing(0.3)),
        (
            {"model": {"pricing": {**PER_SECOND, "cost_per_second_high_res": "0.5"}}},
            Pricing(0.3, 0.5),
        ),
        ({"model": {"pricing": {"cost_per_second": 0.1}}}, Pricing(0.1)),  # no method given
        (
            {
                "model": {
                    "pricing": PER_SECOND,
                    "json_request_schema": {"properties": {"seconds": {"default": "4"}}},
                }
            },
            Pricing(0.3, None, 4.0),
        ),
        ({"model": {"name": "m"}}, None),  # no pricing
        ({"model": {"pricing": {"method": "per_image", "cost_per_image": 0.04}}}, None),
        ({"model": {"pricing": {"method": "per_video_output_second"}}}, None),
    ],
)
def test_a_price_is_read_from_the_model_object(answer: object, expected: Pricing | None) -> None:
    assert parse_pricing(answer, "GET /api/ai/models/m") == expected


@pytest.mark.parametrize(
    "answer",
    [
        ["not", "an", "object"],
        {"model": "sora"},
        {"model": {"pricing": {"cost_per_second": "cheap"}}},
        {"model": {"pricing": {"cost_per_second": -0.3}}},
        {"model": {"pricing": {"cost_per_second": float("nan")}}},
        {"model": {"pricing": {"cost_per_second": True}}},
        {"model": {"pricing": {"cost_per_second": 0.3, "cost_per_second_high_res": []}}},
    ],
)
def test_a_broken_price_is_an_error_naming_the_field(answer: object) -> None:
    with pytest.raises(MalformedAnswer, match=r"GET /api/ai/models/m"):
        parse_pricing(answer, "GET /api/ai/models/m")


@pytest.mark.parametrize(
    ("pricing", "request_body", "expected"),
    [
        (SORA, {"seconds": "8"}, 2.40),
        (SORA, {"seconds": 4}, 1.20),
        (SORA, {"seconds": "12", "resolution": "high"}, 6.00),  # the high-resolution rate
        (SORA, {"seconds": "8", "size": "1792x1024"}, 4.00),
        (SORA, {"seconds": "8", "size": "1280x720"}, 2.40),
        (SORA, {"seconds": "8", "num_generations": 3}, 7.20),
        (SORA, {"seconds": "8", "n": 2}, 4.80),
        (SORA, {"duration": 5}, 1.50),
        (Pricing(0.3), {"seconds": "8", "resolution": "high"}, 2.40),  # no high rate: the one
        (Pricing(0.3, None, 4.0), {"prompt": "no length"}, 1.20),  # the schema's default
        (SORA, {"prompt": "no length, no default"}, None),
        (SORA, {"seconds": "soon"}, None),
        (SORA, {"seconds": "-4"}, None),
        (SORA, {"seconds": True}, None),
        (None, {"seconds": "8"}, None),  # no price: unknown
    ],
)
def test_a_jobs_estimate(
    pricing: Pricing | None, request_body: dict[str, Any], expected: float | None
) -> None:
    assert job_estimate_usd(pricing, request_body) == expected


def test_each_generation_carries_its_share() -> None:
    assert each_usd(7.2, {"num_generations": 3}) == 2.4
    assert each_usd(None, {"num_generations": 3}) is None


DAILY = Caps(daily_usd=5.0)


@pytest.mark.parametrize(
    ("caps", "estimate", "used", "held_because"),
    [
        (Caps(), 100.0, Used(1000, 1000), None),  # no cap: always
        (DAILY, 2.4, Used(1.2, 1.2), None),
        (DAILY, 3.8, Used(1.2, 1.2), None),  # lands on the cap exactly: fits
        (DAILY, 0.1 + 0.2, Used(4.7, 4.7), None),  # float sums do not tip it over
        (
            DAILY,
            4.0,
            Used(1.2, 1.2),
            "$1.20 spent or reserved today + $4.00 for this job would cross the daily cap "
            "of $5.00; it goes ahead when the day rolls over or the cap is raised",
        ),
        (
            DAILY,
            6.0,
            Used(0, 0),
            "this job's $6.00 alone is over the daily cap of $5.00; it goes ahead once the cap "
            "is raised",
        ),
        (
            Caps(daily_usd=50, monthly_usd=100),
            4.0,
            Used(10, 98),
            "$98.00 spent or reserved this month + $4.00 for this job would cross the monthly "
            "cap of $100.00; it goes ahead when the month rolls over or the cap is raised",
        ),
        (Caps(daily_usd=0), 0.5, Used(0, 0), "this job's $0.50 alone is over the daily cap"),
        (DAILY, None, Used(9, 9), None),  # unknown price: goes ahead unless told to hold
        (
            Caps(daily_usd=5, unknown_price="hold"),
            None,
            Used(0, 0),
            'its price is unknown and budget.unknown_price = "hold"',
        ),
        (Caps(unknown_price="hold"), None, Used(0, 0), None),  # no cap, no budget
    ],
)
def test_the_budget_decides(
    caps: Caps, estimate: float | None, used: Used, held_because: str | None
) -> None:
    verdict = decide(caps, estimate, used)
    if held_because is None:
        assert verdict == Go()
    else:
        assert isinstance(verdict, Hold)
        assert verdict.reason.startswith(held_because)


@pytest.fixture
def zone(request: pytest.FixtureRequest) -> Iterator[None]:
    with in_zone(request.param):
        yield


@pytest.mark.parametrize(
    ("zone", "now", "day", "month", "next_day"),
    [
        ("UTC", "2026-12-03T11:50", "2026-12-03T00:00", "2026-12-01T00:00", "2026-12-04T00:00"),
        ("UTC", "2026-12-31T23:59", "2026-12-31T00:00", "2026-12-01T00:00", "2027-01-01T00:00"),
        # The day the clocks go back is 25 hours long: tomorrow still starts at midnight.
        (
            "Europe/Berlin",
            "2026-10-25T01:00",
            "2026-10-25T00:00",
            "2026-10-01T00:00",
            "2026-10-26T00:00",
        ),
        (
            "America/New_York",
            "2026-03-08T12:00",
            "2026-03-08T00:00",
            "2026-03-01T00:00",
            "2026-03-09T00:00",
        ),
    ],
    indirect=["zone"],
)
@pytest.mark.usefixtures("zone")
def test_the_periods_are_the_local_day_and_month(
    now: str, day: str, month: str, next_day: str
) -> None:
    def local(text: str) -> float:
        return datetime.fromisoformat(text).astimezone().timestamp()

    found = periods(local(now))
    assert (found.day_start, found.month_start, found.next_start) == (
        local(day),
        local(month),
        local(next_day),
    )


@pytest.mark.usefixtures("zone")
@pytest.mark.parametrize("zone", ["UTC"], indirect=True)
def test_spend_is_summed_per_day_provider_and_model() -> None:
    def at(text: str) -> float:
        return datetime.fromisoformat(text).astimezone().timestamp()

    rows: list[SpendRow] = [
        (at("2026-12-02T10:00"), "oxen", "sora", 1.2, True),
        (at("2026-12-02T23:59"), "oxen", "sora", 2.4, True),
        (at("2026-12-03T00:01"), "oxen", "sora", 1.2, True),
        (at("2026-12-03T09:00"), "lumenfall", "sora-2-pro", 2.0, False),
        (at("2026-12-03T09:30"), "lumenfall", "sora-2-pro", None, False),
        (at("2026-12-03T10:00"), "oxen", None, None, False),
    ]
    assert [line.record() for line in spend_lines(rows)] == [
        {
            "day": "2026-12-02",
            "provider": "oxen",
            "model": "sora",
            "generations": 2,
            "cost_usd": 3.6,
            "estimated": 2,
            "unknown": 0,
        },
        {
            "day": "2026-12-03",
            "provider": "lumenfall",
            "model": "sora-2-pro",
            "generations": 2,
            "cost_usd": 2.0,
            "estimated": 0,
            "unknown": 1,
        },
        {
            "day": "2026-12-03",
            "provider": "oxen",
            "model": "-",
            "generations": 1,
            "cost_usd": 0.0,
            "estimated": 0,
            "unknown": 1,
        },
        {
            "day": "2026-12-03",
            "provider": "oxen",
            "model": "sora",
            "generations": 1,
            "cost_usd": 1.2,
            "estimated": 1,
            "unknown": 0,
        },
    ]
    assert spend_table(spend_lines(rows)).splitlines() == [
        "DAY         PROVIDER   MODEL       GENERATIONS  COST",
        "2026-12-02  oxen       sora        2            $3.60 (estimate)",
        "2026-12-03  lumenfall  sora-2-pro  2            $2.00 + 1 of unknown cost",
        "2026-12-03  oxen       -           1            unknown",
        "2026-12-03  oxen       sora        1            $1.20 (estimate)",
        "total                              6            $6.80 (3 estimated) + 2 of unknown cost",
    ]
    assert spend_table([]) == "no generations in this period"
