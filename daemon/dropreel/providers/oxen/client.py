"""The Oxen.ai async-queue client: REST calls and the /api/events stream (see oxen-api.md)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from httpx_sse import aconnect_sse
from pydantic import SecretStr

from dropreel.backoff import retry_after_seconds
from dropreel.errors import (
    AmbiguousAnswer,
    AuthRefused,
    GenerationUnknown,
    MalformedAnswer,
    ProviderError,
    RangeNotSatisfiable,
    RequestRefused,
    ResultUrlRefused,
    RetryableProviderError,
)
from dropreel.lifecycle import RemoteStatus
from dropreel.ops.redact import redact
from dropreel.providers.base import RemoteGeneration
from dropreel.providers.streamguard import BoundedStream
from dropreel.providers.urls import usable_result_url

_MAX_MESSAGE_CHARS = 500


def error_message(response: httpx.Response) -> str:
    """The provider's explanation (either documented error shape, else the raw text),
    bounded, and with our key masked: an error body may echo the request's headers."""
    return redact(_explanation(response))


def _explanation(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            parts = [error.get(k) for k in ("title", "detail", "message")]
            text = ": ".join(str(p) for p in parts if p)
            if text:
                return text[:_MAX_MESSAGE_CHARS]
        if isinstance(error, str) and error:
            return error[:_MAX_MESSAGE_CHARS]
        if payload.get("status_message"):
            return str(payload["status_message"])[:_MAX_MESSAGE_CHARS]
    text = response.text.strip()
    return (text or response.reason_phrase or "no message")[:_MAX_MESSAGE_CHARS]


def raise_for_answer(response: httpx.Response, what: str) -> None:
    """Turn a non-2xx answer into the matching ProviderError."""
    code = response.status_code
    if code < 300:
        return
    message = error_message(response)
    if code in (401, 403):
        raise AuthRefused(what, code, message)
    # Only these two prove the request was not taken; a 502/504 may come from a gateway
    # after the provider created (and billed) what was asked.
    if code in (429, 503):
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        raise RetryableProviderError(what, code, message, retry_after)
    if code >= 500:
        raise AmbiguousAnswer(what, code, message)
    if 400 <= code < 500:
        raise RequestRefused(what, code, message)
    raise ProviderError(what, code, message)


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


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedAnswer(f"{what}: answer is not JSON ({exc})") from None


class OxenClient:
    """Speaks Oxen's async queue; implements the Provider and EventFeed seams."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: SecretStr,
        idle_timeout_s: float,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._rest = self._base + "/api/ai"
        self._key = api_key
        self._idle_timeout_s = idle_timeout_s
        origin = urlsplit(self._base)
        self._origin = (origin.scheme, origin.netloc)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key.get_secret_value()}"}

    async def enqueue(self, body: Mapping[str, Any]) -> list[RemoteGeneration]:
        what = f"POST /api/ai/queue (model {body.get('model')!r})"
        response = await self._http.post(
            f"{self._rest}/queue", json=dict(body), headers=self._auth()
        )
        raise_for_answer(response, what)
        payload = _json(response, what)
        raw = payload.get("generations") if isinstance(payload, dict) else None
        if not isinstance(raw, list) or not raw:
            raise MalformedAnswer(f"{what}: answer has no generations")
        return [parse_generation(item, what) for item in raw]

    async def get(self, generation_id: str) -> RemoteGeneration:
        what = f"GET /api/ai/queue/{generation_id}"
        path = quote(generation_id, safe="")
        response = await self._http.get(f"{self._rest}/queue/{path}", headers=self._auth())
        if response.status_code == 404:
            # Older docs: terminal generations leave the queue. The full record may remain.
            return await self._from_generations(generation_id, path)
        raise_for_answer(response, what)
        return parse_generation(_json(response, what), what)

    async def _from_generations(self, generation_id: str, path: str) -> RemoteGeneration:
        what = f"GET /api/ai/generations/{generation_id}"
        response = await self._http.get(f"{self._rest}/generations/{path}", headers=self._auth())
        if response.status_code == 404:
            raise GenerationUnknown(what, 404, "not found in the queue nor in generations")
        raise_for_answer(response, what)
        payload = _json(response, what)
        inner = payload.get("generation") if isinstance(payload, dict) else None
        return parse_generation(inner if inner is not None else payload, what)

    async def cancel(self, generation_id: str) -> None:
        what = f"DELETE /api/ai/queue/{generation_id}"
        path = quote(generation_id, safe="")
        response = await self._http.delete(f"{self._rest}/queue/{path}", headers=self._auth())
        # Older docs answer 404 for a generation that is already terminal: nothing to stop.
        if response.status_code != 404:
            raise_for_answer(response, what)

    async def _listed_rows(self, status: str | None) -> list[Any] | None:
        """The raw rows of one listing, or None if the provider offers no listing."""
        what = "GET /api/ai/queue" + (f"?status={status}" if status else "")
        params = {"status": status} if status else None
        response = await self._http.get(f"{self._rest}/queue", params=params, headers=self._auth())
        if response.status_code in (404, 405, 501):
            return None
        raise_for_answer(response, what)
        payload = _json(response, what)
        raw = payload.get("generations") if isinstance(payload, dict) else None
        return raw if isinstance(raw, list) else None

    async def list_active(self) -> set[str] | None:
        rows = await self._listed_rows(None)
        if rows is None:
            return None
        # Only ids are kept: this runs over every pending generation at each reconcile.
        active: set[str] = set()
        for item in rows:
            if isinstance(item, dict):
                status = RemoteStatus.parse(item.get("status"))
                generation_id = item.get("generation_id") or item.get("id")
                if isinstance(generation_id, str) and status is not None and not status.is_terminal:
                    active.add(generation_id)
        return active

    async def list_recent(self) -> list[RemoteGeneration]:
        # Newer docs: filters and full rows; older: only active rows whatever the filter.
        found: dict[str, RemoteGeneration] = {}
        for status in (None, "succeeded", "failed", "cancelled"):
            for item in await self._listed_rows(status) or []:
                generation = parse_generation(item, "GET /api/ai/queue")
                found.setdefault(generation.generation_id, generation)
        return list(found.values())

    @asynccontextmanager
    async def open_download(self, url: str, *, offset: int = 0) -> AsyncIterator[httpx.Response]:
        # The bytes as served: a Content-Encoding is never expanded into the outbox.
        headers: dict[str, str] = {"Accept-Encoding": "identity"}
        target = urlsplit(url)
        # Presigned URLs need no key; never send it to another host.
        if (target.scheme, target.netloc) == self._origin:
            headers.update(self._auth())
        if offset:
            headers["Range"] = f"bytes={offset}-"
        async with self._http.stream("GET", url, headers=headers) as response:
            if response.status_code >= 300:
                await response.aread()
                what = f"GET {target.path or '/'} (result download)"
                code = response.status_code
                if code == 416:
                    total = response.headers.get("content-range", "").rpartition("/")[2]
                    raise RangeNotSatisfiable(
                        what, error_message(response), int(total) if total.isdigit() else None
                    )
                if 400 <= code < 500 and code != 429:
                    raise ResultUrlRefused(what, code, error_message(response))
                raise_for_answer(response, what)
            yield response

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncIterator[tuple[str, str]]]:
        what = "GET /api/events"
        timeout = httpx.Timeout(self._http.timeout.connect, read=self._idle_timeout_s)
        async with aconnect_sse(
            self._http, "GET", f"{self._base}/api/events", headers=self._auth(), timeout=timeout
        ) as source:
            if source.response.status_code != 200:
                await source.response.aread()
                raise_for_answer(source.response, what)
                raise ProviderError(what, source.response.status_code, "unexpected answer")
            source.response.stream = BoundedStream(source.response.stream)  # type: ignore[arg-type]
            yield self._pairs(source.aiter_sse())

    @staticmethod
    async def _pairs(events: AsyncGenerator[Any, None]) -> AsyncIterator[tuple[str, str]]:
        try:
            async for event in events:
                yield event.event, event.data
        finally:
            await events.aclose()
