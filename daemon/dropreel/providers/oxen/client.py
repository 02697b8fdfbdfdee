"""The Oxen.ai async-queue client: REST calls and the /api/events stream (see oxen-api.md)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Collection, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import aconnect_sse
from pydantic import SecretStr

from dropreel.errors import GenerationUnknown, MalformedAnswer, ProviderError
from dropreel.lifecycle import Observation, RemoteStatus
from dropreel.ops.redact import redact
from dropreel.providers.base import (
    Capabilities,
    ImageInput,
    ModelFacts,
    Recovery,
    RemoteGeneration,
    ResultStream,
)
from dropreel.providers.http import (
    ResultFetcher,
    json_answer,
    raise_for_answer,
    send,
    streamed_items,
    translated,
)
from dropreel.providers.oxen.events import interpret
from dropreel.providers.oxen.model import model_facts
from dropreel.providers.settle import settle_lost_post
from dropreel.providers.streamguard import BoundedStream
from dropreel.providers.urls import usable_result_url

_MAX_MESSAGE_CHARS = 500


def rest_base(base_url: str) -> str:
    """Where Oxen's REST API lives under its base URL (oxen-api.md)."""
    return base_url.rstrip("/") + "/api/ai"


def events_url(base_url: str) -> str:
    """Oxen's event stream: not under /api/ai (oxen-api.md)."""
    return base_url.rstrip("/") + "/api/events"


# num_generations 1-4 at enqueue (oxen-api.md); no idempotency key; a push stream; a
# generation's record says queued or processing, never how far along.
CAPABILITIES = Capabilities(
    push_feed=True,
    idempotency_keys=False,
    cancel=True,
    generations_per_request=4,
    reports_progress=False,
)


def parse_generation(payload: object, what: str) -> RemoteGeneration:
    """A REST generation object, tolerating both documented field sets."""
    if not isinstance(payload, dict):
        raise MalformedAnswer(f"{what}: expected a generation object")
    generation_id = payload.get("generation_id") or payload.get("id")
    status = RemoteStatus.parse(payload.get("status"))
    if not isinstance(generation_id, str) or not generation_id or status is None:
        raise MalformedAnswer(f"{what}: generation without a usable id or status")
    url = payload.get("result_url") or payload.get("url")
    error = payload.get("error_message") or payload.get("error")
    enqueued_at = payload.get("enqueued_at")
    return RemoteGeneration(
        generation_id=generation_id,
        status=status,
        result_url=usable_result_url(url),
        error=redact(str(error))[:_MAX_MESSAGE_CHARS] if error else None,
        enqueued_at=float(enqueued_at) if isinstance(enqueued_at, int | float) else None,
        row=payload,
    )


class OxenClient:
    """Speaks Oxen's async queue; implements the Provider and EventFeed seams."""

    capabilities = CAPABILITIES

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: SecretStr,
        idle_timeout_s: float,
        name: str = "oxen",
    ) -> None:
        self.name = name
        self._http = http
        self._base = base_url.rstrip("/")
        self._rest = rest_base(self._base)
        self._key = api_key
        self._idle_timeout_s = idle_timeout_s
        self._results = ResultFetcher(http, origin_url=self._base, auth=self._auth())

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key.get_secret_value()}"}

    async def enqueue(
        self, body: Mapping[str, Any], *, idempotency_key: str = "", image: ImageInput | None = None
    ) -> list[RemoteGeneration]:
        # Oxen knows no idempotency key: a lost answer is settled by `recover_lost_post`.
        if image is not None:
            # A data: URI where a URL is expected (oxen-api.md, image inputs).
            body = {**body, "input_image": image.data_uri()}
        what = f"POST /api/ai/queue (model {body.get('model')!r})"
        response = await send(
            self._http, "POST", f"{self._rest}/queue", json=dict(body), headers=self._auth()
        )
        raise_for_answer(response, what)
        payload = json_answer(response, what)
        raw = payload.get("generations") if isinstance(payload, dict) else None
        if not isinstance(raw, list) or not raw:
            raise MalformedAnswer(f"{what}: answer has no generations")
        return [parse_generation(item, what) for item in raw]

    async def get(self, generation_id: str) -> RemoteGeneration:
        what = f"GET /api/ai/queue/{generation_id}"
        path = quote(generation_id, safe="")
        response = await send(self._http, "GET", f"{self._rest}/queue/{path}", headers=self._auth())
        if response.status_code == 404:
            # Older docs: terminal generations leave the queue. The full record may remain.
            return await self._from_generations(generation_id, path)
        raise_for_answer(response, what)
        return parse_generation(json_answer(response, what), what)

    async def _from_generations(self, generation_id: str, path: str) -> RemoteGeneration:
        what = f"GET /api/ai/generations/{generation_id}"
        response = await send(
            self._http, "GET", f"{self._rest}/generations/{path}", headers=self._auth()
        )
        if response.status_code == 404:
            raise GenerationUnknown(what, 404, "not found in the queue nor in generations")
        raise_for_answer(response, what)
        payload = json_answer(response, what)
        inner = payload.get("generation") if isinstance(payload, dict) else None
        return parse_generation(inner if inner is not None else payload, what)

    async def cancel(self, generation_id: str) -> None:
        what = f"DELETE /api/ai/queue/{generation_id}"
        path = quote(generation_id, safe="")
        response = await send(
            self._http, "DELETE", f"{self._rest}/queue/{path}", headers=self._auth()
        )
        # Older docs answer 404 for a generation that is already terminal: nothing to stop.
        if response.status_code != 404:
            raise_for_answer(response, what)

    def _listing(
        self, status: str | None
    ) -> AbstractAsyncContextManager[AsyncIterator[Any] | None]:
        """The rows of one listing as they arrive, or None if the provider offers none."""
        return streamed_items(
            self._http,
            f"{self._rest}/queue",
            "generations.item",
            what="GET /api/ai/queue" + (f"?status={status}" if status else ""),
            absent=(404, 405, 501),
            params={"status": status} if status else None,
            headers=self._auth(),
        )

    async def listed(self, ids: Collection[str]) -> dict[str, RemoteGeneration] | None:
        """The active rows among `ids` from one listing; None if there is no listing.

        Only active rows count: the older API lists no result_url, so a finished generation
        is looked up on its own.
        """
        wanted = ids if isinstance(ids, set | frozenset | dict) else set(ids)
        found: dict[str, RemoteGeneration] = {}
        async with self._listing(None) as rows:
            if rows is None:
                return None
            async for item in rows:
                if not isinstance(item, dict):
                    continue
                generation_id = item.get("generation_id") or item.get("id")
                if generation_id not in wanted:
                    continue
                status = RemoteStatus.parse(item.get("status"))
                if isinstance(generation_id, str) and status is not None and not status.is_terminal:
                    found[generation_id] = RemoteGeneration(generation_id, status)
        return found

    async def recover_lost_post(
        self,
        request: Mapping[str, Any],
        posted_at: float,
        *,
        window_s: float,
        taken: Collection[str],
    ) -> Recovery:
        """What a POST whose answer was lost created, found in the listing (or why not)."""
        return settle_lost_post(
            request, posted_at, window_s=window_s, candidates=await self.list_recent(), taken=taken
        )

    async def list_recent(self) -> list[RemoteGeneration]:
        # Newer docs: filters and full rows; older: only active rows whatever the filter.
        found: dict[str, RemoteGeneration] = {}
        for status in (None, "succeeded", "failed", "cancelled"):
            async with self._listing(status) as rows:
                if rows is None:
                    continue
                async for item in rows:
                    generation = parse_generation(item, "GET /api/ai/queue")
                    found.setdefault(generation.generation_id, generation)
        return list(found.values())

    async def model_facts(self, model: str) -> ModelFacts:
        """GET /api/ai/models/{model}: its `json_request_schema` and `pricing`, in one look-up
        shared by the request check and the budget (oxen-api.md, added later)."""
        what = f"GET /api/ai/models/{model}"
        path = quote(model, safe="")
        response = await send(
            self._http, "GET", f"{self._rest}/models/{path}", headers=self._auth()
        )
        if response.status_code in (404, 405, 501):
            return ModelFacts()
        raise_for_answer(response, what)
        return model_facts(model, json_answer(response, what), what)

    def open_download(
        self, url: str, *, offset: int = 0
    ) -> AbstractAsyncContextManager[ResultStream]:
        return self._results.open_download(url, offset=offset)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncIterator[Observation | str]]:
        what = "GET /api/events"
        timeout = httpx.Timeout(self._http.timeout.connect, read=self._idle_timeout_s)
        # Around the whole session: failures while reading events surface here too.
        with translated(what):
            async with aconnect_sse(
                self._http, "GET", events_url(self._base), headers=self._auth(), timeout=timeout
            ) as source:
                if source.response.status_code != 200:
                    await source.response.aread()
                    raise_for_answer(source.response, what)
                    raise ProviderError(what, source.response.status_code, "unexpected answer")
                bounded = BoundedStream(source.response.stream)  # type: ignore[arg-type]
                source.response.stream = bounded
                yield self._meanings(source.aiter_sse())

    @staticmethod
    async def _meanings(events: AsyncGenerator[Any, None]) -> AsyncIterator[Observation | str]:
        try:
            async for event in events:
                yield interpret(event.event, event.data)
        finally:
            await events.aclose()
