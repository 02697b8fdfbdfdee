"""The simulator's core: a real HTTP server on loopback, serving every dialect's routes.

Shared by the dialects (`oxen`, `openai_videos`): binding, serving from a thread, ranges,
and dropping a connection on purpose.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

import uvicorn
from starlette.applications import Starlette


class Served(Protocol):
    """A simulator the server can serve: its app, and where it is reachable."""

    base_url: str

    def app(self) -> Starlette: ...


S = TypeVar("S", bound=Served)


class SimulatedDrop(ConnectionAbortedError):
    """Raised inside a response to make the server drop the connection mid-body."""


class _QuietAboutSimulatedDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SimulatedDrop))


QUIET = _QuietAboutSimulatedDrops()


async def half_then_drop(body: bytes) -> AsyncIterator[bytes]:
    yield body[: len(body) // 2]
    raise SimulatedDrop("simulated: connection dropped mid-download")


def range_start(header: str | None) -> int | None:
    if not header or not header.startswith("bytes="):
        return None
    first = header.removeprefix("bytes=").split(",", 1)[0]
    start, _, _end = first.partition("-")
    return int(start) if start.isdigit() else None


def bind_loopback(port: int = 0) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say
    # so, and with Nagle on, each response's second write waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def make_server(simulator: Served, sock: socket.socket) -> uvicorn.Server:
    logging.getLogger("uvicorn.error").addFilter(QUIET)  # adding it again is a no-op
    host, port = sock.getsockname()[:2]
    simulator.base_url = f"http://{host}:{port}"
    config = uvicorn.Config(
        simulator.app(),
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=1,
        # uvicorn drops idle connections after 5 s by default; an API keeps them longer.
        timeout_keep_alive=75,
        access_log=False,
    )
    return uvicorn.Server(config)


@contextmanager
def serving(sim: S, *, port: int = 0, timeout_s: float = 10.0) -> Iterator[S]:
    """Serve a simulator from a background thread for the duration of the block."""
    sock = bind_loopback(port)
    server = make_server(sim, sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the simulator did not start")
        time.sleep(0.01)
    try:
        yield sim
    finally:
        server.should_exit = True
        thread.join(timeout_s)
        sock.close()
