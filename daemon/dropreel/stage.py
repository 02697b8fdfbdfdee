"""A stage of the flow: its own queue of ids, its own workers, its own retries.

Stages hand work forward (`put`) and schedule their own retries (`later`); none calls back
into a central object. The queue is unbounded: everything queued is also in the database,
and the event path must never block on a slow stage.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Awaitable, Callable

import anyio
import structlog
from anyio.abc import TaskGroup

from dropreel.errors import ConfigError, StateError

log = structlog.get_logger("dropreel.service")

# Failures no single item explains: the daemon stops with one line (see cli).
FATAL = (sqlite3.Error, StateError, ConfigError)
UNEXPECTED_FAILURE_RETRY_S = 60.0


class Drain:
    """Items under way in stages that finish their work on a graceful stop."""

    def __init__(self) -> None:
        self.busy = 0
        self.stopping = False
        self.drained = anyio.Event()

    def begin(self) -> None:
        self.busy += 1

    def end(self) -> None:
        self.busy -= 1
        if self.stopping and not self.busy:
            self.drained.set()


class Stage:
    """One stage: `put` an id to have `handle` run on it by one of `workers` workers."""

    def __init__(
        self,
        name: str,
        handle: Callable[[str], Awaitable[None]],
        *,
        workers: int,
        drain: Drain,
        finish_on_stop: bool = False,
    ) -> None:
        self.name = name
        self._handle = handle
        self._workers = workers
        self._drain = drain
        self._finish_on_stop = finish_on_stop
        self._send, self._receive = anyio.create_memory_object_stream[str](math.inf)
        self._group: TaskGroup | None = None
        self._deferred: list[tuple[str, float]] = []

    async def put(self, item: str) -> None:
        await self._send.send(item)

    def later(self, item: str, delay_s: float) -> None:
        """Handle `item` again after `delay_s` (a retry)."""
        if self._group is None:
            self._deferred.append((item, delay_s))
            return
        self._group.start_soon(self._after, item, delay_s)

    async def _after(self, item: str, delay_s: float) -> None:
        await anyio.sleep(delay_s)
        await self._send.send(item)

    async def run(self) -> None:
        """Run the workers until cancelled."""
        async with anyio.create_task_group() as group:
            self._group = group
            for item, delay_s in self._deferred:
                group.start_soon(self._after, item, delay_s)
            self._deferred.clear()
            for _ in range(self._workers):
                group.start_soon(self._worker, self._receive.clone())

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    async def _worker(self, items: anyio.abc.ObjectReceiveStream[str]) -> None:
        async with items:
            async for item in items:
                if self._drain.stopping:
                    return  # left in the database: the next start picks it up
                counted = self._finish_on_stop
                if counted:
                    self._drain.begin()
                try:
                    await self._handle(item)
                except FATAL:
                    raise
                except Exception:
                    # One item's unforeseen failure must not stop every other job, now or at
                    # each restart. Its state is in the database; handling it again is safe.
                    log.exception(
                        "unexpected failure; this item is tried again later",
                        stage=self.name,
                        item=item,
                        retry_in_s=UNEXPECTED_FAILURE_RETRY_S,
                    )
                    self.later(item, UNEXPECTED_FAILURE_RETRY_S)
                finally:
                    if counted:
                        self._drain.end()
