"""A failed POST that will be sent again is stored with the reason its job waits."""

from __future__ import annotations

import pytest

from dropreel.errors import (
    AmbiguousAnswer,
    AuthRefused,
    ConnectionLost,
    MalformedAnswer,
    NotSent,
    ReadStalled,
    RetryableProviderError,
)
from dropreel.submission.holdup import Holdup, holdup_text, read_holdup

POST = "POST /api/ai/queue"


@pytest.mark.parametrize(
    ("failure", "holdup", "rest"),
    [
        (RetryableProviderError(POST, 429, "slow down", 30.0), Holdup.THROTTLED, "HTTP 429"),
        (RetryableProviderError(POST, 503, "busy", None), Holdup.THROTTLED, "HTTP 503: busy"),
        (AuthRefused(POST, 401, "invalid key"), Holdup.KEY_REFUSED, "HTTP 401: invalid key"),
        (AuthRefused(POST, 403, "no rights"), Holdup.KEY_REFUSED, "HTTP 403"),
        (NotSent(POST, "connection refused"), Holdup.UNREACHABLE, "connection refused"),
        (ReadStalled(POST, "ReadTimeout"), Holdup.UNREACHABLE, "ReadTimeout"),
        (ConnectionLost(POST, "reset"), Holdup.FAILING, "reset"),
        (AmbiguousAnswer(POST, 502, "bad gateway"), Holdup.FAILING, "HTTP 502"),
        (MalformedAnswer("not JSON"), Holdup.FAILING, "not JSON"),
    ],
)
def test_each_failure_reads_back_as_its_holdup(
    failure: Exception, holdup: Holdup, rest: str
) -> None:
    stored = holdup_text(failure)
    assert stored.startswith(f"{holdup.value}: ")
    read = read_holdup(stored)
    assert read is not None and read[0] is holdup and rest in read[1]


@pytest.mark.parametrize(
    "error",
    [None, "", "POST /api/ai/queue -> HTTP 401: invalid key", "throttled", "cancelled: x"],
)
def test_other_errors_are_no_holdup(error: str | None) -> None:
    assert read_holdup(error) is None
