"""What every provider's HTTP client shares: error answers mapped into dropreel's error tree,
JSON answers read strictly, and result downloads that never send the key to another host."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import ijson  # type: ignore[import-untyped]

from dropreel.backoff import retry_after_seconds
from dropreel.errors import (
    AmbiguousAnswer,
    AuthRefused,
    ConnectionLost,
    MalformedAnswer,
    NotSent,
    ProviderError,
    RangeNotSatisfiable,
    ReadStalled,
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


@contextmanager
def translated(what: str) -> Iterator[None]:
    """httpx's failures as dropreel's: whether the request may have reached the provider is
    all a caller needs to know (httpx does the same for its transports, in one place)."""
    try:
        yield
    except (
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.PoolTimeout,
        httpx.LocalProtocolError,
        httpx.UnsupportedProtocol,
    ) as exc:
        raise NotSent(what, _detail(exc)) from exc
    except httpx.ReadTimeout as exc:
        raise ReadStalled(what, _detail(exc)) from exc
    except httpx.HTTPError as exc:
        raise ConnectionLost(what, _detail(exc)) from exc


async def send(http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request, its failures translated (see `translated`)."""
    with translated(f"{method} {shown_url(url)}"):
        return await http.request(method, url, **kwargs)


def shown_url(url: str) -> str:
    """Where a request went, for an operator: without the query, which may hold a
    presigned URL's signature."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else parts.path


@asynccontextmanager
async def streamed_items(
    http: httpx.AsyncClient,
    url: str,
    prefix: str,
    *,
    what: str,
    absent: Collection[int] = (),
    **kwargs: Any,
) -> AsyncIterator[AsyncIterator[Any] | None]:
    """The items at `prefix` (ijson's notation, e.g. "generations.item") of a JSON answer,
    parsed as they arrive, or None if the answer's status is one of `absent`.

    A listing of a hundred thousand rows is 25 MB of JSON: parsed whole, it would more than
    double the daemon's memory for a moment; item by item, it never holds more than one.
    """
    with translated(f"GET {shown_url(url)}"):
        async with http.stream("GET", url, **kwargs) as response:
            if response.status_code in absent:
                yield None
                return
            if response.status_code >= 300:
                await response.aread()
                raise_for_answer(response, what)
            yield _parsed_items(response, prefix, what)


async def _parsed_items(response: httpx.Response, prefix: str, what: str) -> AsyncIterator[Any]:
    try:
        async for item in ijson.items_async(_Reader(response), prefix, use_float=True):
            yield item
    except ijson.JSONError as exc:
        raise MalformedAnswer(f"{what}: answer is not JSON ({exc})") from None


class _Reader:
    """An answer's (decoded) body as the file-like object ijson reads from."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.aiter_bytes()

    async def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""  # ijson asks for nothing first, to learn whether we give bytes or str
        async for chunk in self._chunks:
            if chunk:  # an empty chunk would read as the end
                return chunk
        return b""


_TIMED_OUT: dict[type[Exception], tuple[str, str]] = {
    # What each of httpx's time-outs means, and which of its limits applies.
    httpx.ConnectTimeout: ("no connection", "connect"),
    httpx.ReadTimeout: ("no data received", "read"),
    httpx.WriteTimeout: ("could not send", "write"),
    httpx.PoolTimeout: ("no free connection", "pool"),
}


def _detail(exc: Exception) -> str:
    """httpx's message, or, where it has none (a bare ReadTimeout), what happened in words."""
    if str(exc):
        return str(exc)
    meaning = _TIMED_OUT.get(type(exc))
    if meaning is None:
        return type(exc).__name__
    words, limit = meaning
    seconds = _timeout_of(exc, limit)
    within = f" within {seconds:g}s" if seconds is not None else ""
    return f"{words}{within} ({limit} time-out)"


def _timeout_of(exc: Exception, limit: str) -> float | None:
    try:
        request = exc.request if isinstance(exc, httpx.RequestError) else None
    except RuntimeError:
        request = None  # raised without a request (httpx sets one on every real request)
    if request is None:
        return None
    value = request.extensions.get("timeout", {}).get(limit)
    return float(value) if isinstance(value, int | float) else None


class HttpResultStream:
    """A result being downloaded: its status, headers and raw bytes (as served, never
    decoded), with httpx's failures translated."""

    def __init__(self, response: httpx.Response, what: str) -> None:
        self._response = response
        self._what = what
        self.status_code = response.status_code
        self.headers: Mapping[str, str] = response.headers

    async def chunks(self) -> AsyncIterator[bytes]:
        with translated(self._what):
            async for chunk in self._response.aiter_raw():
                yield chunk


class ResultFetcher:
    """Streams result files; the key goes only to the API's own origin (a presigned URL on
    a media host needs none, and must never see it)."""

    def __init__(self, http: httpx.AsyncClient, *, origin_url: str, auth: dict[str, str]) -> None:
        self._http = http
        origin = urlsplit(origin_url)
        self._origin = (origin.scheme, origin.netloc)
        self._auth = auth

    @asynccontextmanager
    async def open_download(self, url: str, *, offset: int = 0) -> AsyncIterator[HttpResultStream]:
        # The bytes as served: a Content-Encoding is never expanded into the outbox.
        headers: dict[str, str] = {"Accept-Encoding": "identity"}
        target = urlsplit(url)
        # Presigned URLs need no key; never send it to another host.
        if (target.scheme, target.netloc) == self._origin:
            headers.update(self._auth)
        if offset:
            headers["Range"] = f"bytes={offset}-"
        what = f"GET {shown_url(url)} (result download)"
        with translated(what):
            async with self._http.stream("GET", url, headers=headers) as response:
                if response.status_code >= 300:
                    await response.aread()
                self._check(response, what)
                yield HttpResultStream(response, what)

    @staticmethod
    def _check(response: httpx.Response, what: str) -> None:
        """Raise the matching error for a result host's refusal."""
        code = response.status_code
        if code < 300:
            return
        if code == 416:
            total = response.headers.get("content-range", "").rpartition("/")[2]
            raise RangeNotSatisfiable(
                what, error_message(response), int(total) if total.isdigit() else None
            )
        if 400 <= code < 500 and code != 429:
            raise ResultUrlRefused(what, code, error_message(response))
        raise_for_answer(response, what)
