"""A bound on what an event stream may send without finishing an event.

An SSE line that never ends (or data lines that never reach the blank line closing their
event) would otherwise grow the decoder's buffers without limit while the connection still
counts as healthy. The guard sits under httpx-sse, on the raw bytes: it only looks for the
blank line (two line breaks) that ends every event, and cuts the stream past a limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

MAX_EVENT_BYTES = 1024 * 1024
_EVENT_ENDS = (b"\n\n", b"\r\n\r\n", b"\r\r")


class EventTooLarge(httpx.RemoteProtocolError):
    """The stream sent more than the limit without ending an event."""


class PendingBytes:
    """Bytes received since the last end of an event. No I/O."""

    def __init__(self, limit: int = MAX_EVENT_BYTES) -> None:
        self.limit = limit
        self.pending = 0
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        """Count a chunk; raise EventTooLarge once the open event is over the limit."""
        window = self._tail + chunk
        end = max(
            (window.rfind(mark) + len(mark) for mark in _EVENT_ENDS if mark in window), default=-1
        )
        if end >= 0:
            self.pending = len(window) - end
        else:
            self.pending += len(chunk)
        self._tail = window[-3:]
        if self.pending > self.limit:
            raise EventTooLarge(
                f"the event stream sent {self.pending} bytes without ending an event "
                f"(limit {self.limit})"
            )


class BoundedStream(httpx.AsyncByteStream):
    """A response body that raises EventTooLarge instead of feeding an endless event on."""

    def __init__(self, inner: httpx.AsyncByteStream, limit: int = MAX_EVENT_BYTES) -> None:
        self._inner = inner
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pending = PendingBytes(self._limit)
        async for chunk in self._inner:
            pending.feed(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()
