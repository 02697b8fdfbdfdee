"""An event stream that never ends its event cannot grow the daemon's memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
from anyio.abc import SocketStream
from pydantic import SecretStr

from dropreel.lifecycle import Observation
from dropreel.providers.oxen.client import OxenClient
from dropreel.providers.streamguard import EventTooLarge, PendingBytes
from dropreel.tracking.stream import Ending, StreamHealth, run_session


def test_bytes_are_counted_from_the_end_of_the_last_event() -> None:
    pending = PendingBytes(limit=100)
    pending.feed(b"event: a\ndata: 1\n\n")
    assert pending.pending == 0
    pending.feed(b"data: 12345")
    assert pending.pending == 11
    pending.feed(b"\n")
    pending.feed(b"\nnext")  # the blank line spans two chunks
    assert pending.pending == 4


@pytest.mark.parametrize("end", [b"\r\n\r\n", b"\r\r", b"\n\n"])
def test_every_spelling_of_a_blank_line_ends_an_event(end: bytes) -> None:
    pending = PendingBytes(limit=100)
    pending.feed(b"data: x" + end + b"ab")
    assert pending.pending == 2


def test_an_event_over_the_limit_is_refused() -> None:
    pending = PendingBytes(limit=100)
    pending.feed(b"data: " + b"x" * 90)
    with pytest.raises(EventTooLarge, match="without ending an event"):
        pending.feed(b"x" * 20)


@asynccontextmanager
async def endless_line_server() -> AsyncIterator[str]:
    """Answers /api/events with a stream whose first line never ends (bounded: 64 MiB)."""

    async def serve(client: SocketStream) -> None:
        async with client:
            await client.receive()
            await client.send(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            chunk = b"x" * 65536
            framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
            await client.send(b"6\r\ndata: \r\n")
            try:
                for _ in range(1024):
                    await client.send(framed)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - not Django
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, serve)
        yield f"http://127.0.0.1:{port}"
        group.cancel_scope.cancel()


async def test_a_line_that_never_ends_breaks_the_session_instead_of_filling_memory() -> None:
    async def never(_: Observation) -> None:
        raise AssertionError("no event should come out of this stream")

    async with endless_line_server() as base_url, httpx.AsyncClient() as http:
        client = OxenClient(http, base_url=base_url, api_key=SecretStr("k"), idle_timeout_s=10)
        with anyio.fail_after(30):
            end = await run_session(client, StreamHealth(), never)
    assert end.ending is Ending.BROKEN
    assert "without ending an event" in end.detail
