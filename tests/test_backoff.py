from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dropreel.backoff import backoff_delay, retry_after_seconds


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (0, 0.0, 0.25),
        (0, 1.0, 0.5),
        (1, 0.0, 0.5),
        (3, 1.0, 4.0),
        (10, 1.0, 60.0),
        (10, 0.0, 30.0),
        (10_000, 0.5, 45.0),
    ],
)
def test_backoff_doubles_is_capped_and_never_zero(
    attempt: int, rand: float, expected: float
) -> None:
    delay = backoff_delay(attempt, initial_s=0.5, max_s=60.0, rand=lambda: rand)
    assert delay == pytest.approx(expected)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("soon", None),
        ("-1", None),
        ("nan", None),
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("100000", 300.0),
        ("Sat, 21 Nov 2026 10:00:30 GMT", 30.0),
        # A floor under whatever the server says: "come back now" is not a hot loop.
        ("0", 1.0),
        ("0.001", 1.0),
        ("Sat, 21 Nov 2026 09:00:00 GMT", 1.0),
    ],
)
def test_retry_after_in_seconds_or_as_a_date(header: str | None, seconds: float | None) -> None:
    now = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC)
    assert retry_after_seconds(header, now=now) == seconds
