"""What every provider's HTTP client shares: error answers mapped into dropreel's error tree,
JSON answers read strictly, and result downloads that never send the key to another host."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx

from dropreel.backoff import retry_after_seconds
from dropreel.errors import (
    AmbiguousAnswer,
    AuthRefused,
    MalformedAnswer,
    ProviderError,
    RangeNotSatisfiable,
    RequestRefused,
    ResultUrlRefused,
    RetryableProviderError,
)
from dropreel.ops.redact import redact

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


def json_answer(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedAnswer(f"{what}: answer is not JSON ({exc})") from None


class ResultFetcher:
    """Streams result files; the key goes only to the API's own origin (a presigned URL on
    a media host needs none, and must never see it)."""

    def __init__(self, http: httpx.AsyncClient, *, origin_url: str, auth: dict[str, str]) -> None:
        self._http = http
        origin = urlsplit(origin_url)
        self._origin = (origin.scheme, origin.netloc)
        self._auth = auth

    @asynccontextmanager
    async def open_download(self, url: str, *, offset: int = 0) -> AsyncIterator[httpx.Response]:
        # The bytes as served: a Content-Encoding is never expanded into the outbox.
        headers: dict[str, str] = {"Accept-Encoding": "identity"}
        target = urlsplit(url)
        # Presigned URLs need no key; never send it to another host.
        if (target.scheme, target.netloc) == self._origin:
            headers.update(self._auth)
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
