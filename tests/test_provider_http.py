"""The provider seam's translation of httpx's failures into dropreel's error tree."""

from __future__ import annotations

import httpx
import pytest

from dropreel.errors import (
    ConnectionLost,
    MalformedAnswer,
    NotSent,
    ReadStalled,
    TransportFailure,
)
from dropreel.providers.http import send, streamed_items


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (httpx.ConnectError("refused"), NotSent),
        (httpx.ConnectTimeout("slow"), NotSent),
        (httpx.PoolTimeout("busy"), NotSent),
        (httpx.LocalProtocolError("bad header"), NotSent),
        (httpx.ReadTimeout(""), ReadStalled),
        (httpx.WriteTimeout("half sent"), ConnectionLost),
        (httpx.ReadError("reset"), ConnectionLost),
        (httpx.RemoteProtocolError("cut"), ConnectionLost),
        (httpx.DecodingError("garbled"), ConnectionLost),
    ],
)
async def test_a_failure_says_only_whether_the_request_may_have_arrived(
    raised: Exception, expected: type[TransportFailure]
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise raised

    async with httpx.AsyncClient(transport=httpx.MockTransport(fail)) as http:
        with pytest.raises(expected) as caught:
            await send(http, "POST", "https://api.test/v1/videos")
    assert type(caught.value) is expected
    # Every failure names where the request went.
    assert str(caught.value).startswith("POST https://api.test/v1/videos: ")
    # A time-out's empty message still says what happened.
    assert str(caught.value) != "POST https://api.test/v1/videos: "


async def test_a_time_out_says_what_did_not_happen_and_within_what_time() -> None:
    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("", request=request)

    transport = httpx.MockTransport(stall)
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5, read=30)) as http:
        with pytest.raises(ReadStalled) as caught:
            await send(http, "GET", "https://api.test/api/ai/queue/g1?token=secret")
    assert str(caught.value) == (
        "GET https://api.test/api/ai/queue/g1: no data received within 30s (read time-out)"
    )


async def test_a_listing_is_read_item_by_item_and_a_broken_one_is_malformed() -> None:
    body = b'{"count": 2, "generations": [{"id": "a"}, {"id": "b"}, {"id": '

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    seen: list[object] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        with pytest.raises(MalformedAnswer, match="GET /api/ai/queue: answer is not JSON"):
            async with streamed_items(
                http, "https://api.test/api/ai/queue", "generations.item", what="GET /api/ai/queue"
            ) as items:
                assert items is not None
                async for item in items:
                    seen.append(item)
    # What arrived whole was used before the break was found.
    assert seen == [{"id": "a"}, {"id": "b"}]


async def test_a_listing_the_provider_does_not_offer_is_none() -> None:
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(404))) as http,
        streamed_items(
            http, "https://api.test/q", "generations.item", what="GET /q", absent=(404,)
        ) as items,
    ):
        assert items is None


def test_ambiguity_is_a_property_of_the_tree() -> None:
    assert not issubclass(NotSent, ConnectionLost)
    assert issubclass(ReadStalled, ConnectionLost)
