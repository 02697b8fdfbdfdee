from __future__ import annotations

import httpx
import pytest

from dropreel.providers.ratelimit import RequestGate, TokenBucket


def test_a_full_bucket_lets_a_burst_through_then_spaces_requests_at_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=10.0, burst=3.0, now=0.0)
    assert [bucket.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve(0.0) == pytest.approx(0.1)
    assert bucket.reserve(0.0) == pytest.approx(0.2)


def test_the_bucket_refills_with_time_but_never_beyond_its_burst() -> None:
    bucket = TokenBucket(rate_per_s=2.0, burst=2.0, now=0.0)
    bucket.reserve(0.0)
    bucket.reserve(0.0)
    assert bucket.reserve(100.0) == 0.0
    assert bucket.reserve(100.0) == 0.0
    assert bucket.reserve(100.0) == pytest.approx(0.5)


def test_any_number_of_requests_in_a_hot_loop_averages_the_ceiling() -> None:
    bucket = TokenBucket(rate_per_s=5.0, burst=5.0, now=0.0)
    waits = [bucket.reserve(0.0) for _ in range(1_000)]
    # The 1,000th request may go out only after (1,000 - burst) / rate seconds.
    assert waits[-1] == pytest.approx((1_000 - 5) / 5.0)


async def test_api_requests_wait_their_turn_and_downloads_do_not() -> None:
    now = [0.0]
    gate = RequestGate(1.0, api_prefixes=("http://api.test/api/ai",), monotonic=lambda: now[0])
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={})

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), event_hooks={"request": [gate.on_request]}
    ) as http:
        await http.get("http://api.test/api/ai/queue")
        for _ in range(5):
            await http.get("http://api.test/api/repos/result.mp4")
        assert gate.delayed == 0
        await http.get("http://api.test/api/ai/queue")
        assert gate.delayed == 1
        await http.post("http://api.test/api/ai/queue")  # took its turn before the claim
    assert gate.delayed == 1
    assert len(seen) == 8
