"""The provider seam's translation of httpx's failures into dropreel's error tree."""

from __future__ import annotations

import httpx
import pytest

from dropreel.errors import ConnectionLost, NotSent, ReadStalled, TransportFailure
from dropreel.providers.http import send


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
    assert str(caught.value).startswith("POST /v1/videos: ")
    # A time-out's empty message still says what happened.
    assert str(caught.value) != "POST /v1/videos: "


def test_ambiguity_is_a_property_of_the_tree() -> None:
    assert not issubclass(NotSent, ConnectionLost)
    assert issubclass(ReadStalled, ConnectionLost)
