from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr

from dropreel.errors import (
    AuthRefused,
    GenerationUnknown,
    MalformedAnswer,
    RequestRefused,
    ResultUrlRefused,
    RetryableProviderError,
)
from dropreel.lifecycle import RemoteStatus
from dropreel.providers.http import error_message
from dropreel.providers.oxen.client import OxenClient

Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler) -> OxenClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return OxenClient(
        http, base_url="https://hub.test", api_key=SecretStr("sk-k"), idle_timeout_s=45
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {
                "error": {"type": "invalid_params", "title": "Bad", "detail": "seconds must be 4"},
                "status": "error",
                "status_message": "invalid_params",
            },
            "Bad: seconds must be 4",
        ),
        ({"error": {"message": "Model not found: bad-model-name"}}, "Model not found"),
        ({"status": "error", "status_message": "unauthenticated"}, "unauthenticated"),
        ("<html>gateway</html>", "<html>gateway</html>"),
    ],
)
def test_both_documented_error_shapes_are_read(body: object, message: str) -> None:
    content = json.dumps(body) if not isinstance(body, str) else body
    assert message in error_message(httpx.Response(400, content=content))


async def test_enqueue_posts_the_body_with_the_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "generations": [
                    {"generation_id": "g1", "status": "queued"},
                    {"generation_id": "g2", "status": "processing"},
                ]
            },
        )

    generations = await client(handler).enqueue({"model": "m", "prompt": "p", "seed": 3})
    assert [(g.generation_id, g.status) for g in generations] == [
        ("g1", RemoteStatus.QUEUED),
        ("g2", RemoteStatus.PROCESSING),
    ]
    assert seen[0].url == "https://hub.test/api/ai/queue"
    assert json.loads(seen[0].content) == {"model": "m", "prompt": "p", "seed": 3}
    assert seen[0].headers["authorization"] == "Bearer sk-k"


@pytest.mark.parametrize(
    ("status", "headers", "error", "retry_after"),
    [
        (400, {}, RequestRefused, None),
        (404, {}, RequestRefused, None),
        (422, {}, RequestRefused, None),
        (401, {}, AuthRefused, None),
        (403, {}, AuthRefused, None),
        (429, {"retry-after": "7"}, RetryableProviderError, 7.0),
        (429, {}, RetryableProviderError, None),
        (503, {}, RetryableProviderError, None),
    ],
)
async def test_enqueue_failures_are_classified(
    status: int, headers: dict[str, str], error: type[Exception], retry_after: float | None
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, json={"error": {"message": "no"}})

    with pytest.raises(error) as caught:
        await client(handler).enqueue({"model": "m"})
    assert "POST /api/ai/queue" in str(caught.value)
    if isinstance(caught.value, RetryableProviderError):
        assert caught.value.retry_after_s == retry_after


@pytest.mark.parametrize(
    "body", [b"not json", b"{}", b'{"generations": []}', b'{"generations": [{"x": 1}]}']
)
async def test_an_unusable_success_answer_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedAnswer):
        await client(lambda r: httpx.Response(200, content=body)).enqueue({"model": "m"})


async def test_get_reads_either_field_set() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "generation_id": "g1",
                "model": "m",
                "status": "succeeded",
                "result_url": "https://r/1.mp4",
                "error_message": None,
            },
        )

    remote = await client(handler).get("g1")
    assert remote.status is RemoteStatus.SUCCEEDED and remote.result_url == "https://r/1.mp4"


async def test_a_404_falls_back_to_the_generation_record() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/ai/queue/g1":
            return httpx.Response(404, json={"error": {"type": "resource_not_found"}})
        assert request.url.path == "/api/ai/generations/g1"
        return httpx.Response(
            200,
            json={
                "generation": {
                    "generation_id": "g1",
                    "status": "failed",
                    "error_message": "bad seconds",
                    "cost": 0,
                },
                "status": "success",
            },
        )

    remote = await client(handler).get("g1")
    assert remote.status is RemoteStatus.FAILED and remote.error == "bad seconds"


async def test_404_everywhere_is_unknown_never_success() -> None:
    with pytest.raises(GenerationUnknown):
        await client(lambda r: httpx.Response(404, json={})).get("g1")


async def test_hostile_ids_stay_in_their_path_segment() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return httpx.Response(404)

    with pytest.raises(GenerationUnknown):
        await client(handler).get("../../admin?x=1")
    assert paths == [
        "/api/ai/queue/..%2F..%2Fadmin%3Fx%3D1",
        "/api/ai/generations/..%2F..%2Fadmin%3Fx%3D1",
    ]


async def test_the_listing_says_only_which_of_ours_are_active() -> None:
    rows = [
        {"generation_id": "a", "status": "queued"},
        {"generation_id": "b", "status": "processing"},
        {"generation_id": "c", "status": "succeeded", "result_url": "u"},
        {"generation_id": "not-ours", "status": "queued"},
    ]
    active = client(lambda r: httpx.Response(200, json={"count": 4, "generations": rows}))
    listed = await active.listed({"a", "b", "c"})
    assert listed is not None
    assert {i: g.status for i, g in listed.items()} == {
        "a": RemoteStatus.QUEUED,
        "b": RemoteStatus.PROCESSING,
    }
    assert await client(lambda r: httpx.Response(404)).listed({"a"}) is None


@pytest.mark.parametrize(
    ("url", "sends_key"),
    [("https://hub.test/api/repos/x/a.mp4", True), ("https://cdn.other/a.mp4?sig=1", False)],
)
async def test_the_key_is_never_sent_to_another_host(url: str, sends_key: bool) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"video")

    async with client(handler).open_download(url, offset=10) as response:
        assert response.status_code == 200
    assert ("authorization" in seen[0].headers) is sends_key
    assert seen[0].headers["range"] == "bytes=10-"


async def test_an_expired_download_url_raises_refused() -> None:
    with pytest.raises(ResultUrlRefused, match="result download"):
        async with client(lambda r: httpx.Response(403, text="expired")).open_download(
            "https://cdn.other/a.mp4"
        ):
            pass
