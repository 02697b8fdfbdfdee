"""Finished generations, recorded in batches that grow with the load, then handed on."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream

from dropreel.state.records import Finish

log = structlog.get_logger("dropreel.service")


class FinishRecorder:
    """Records finishes durably, then hands each to delivery (never the other way round).

    The stream reader only queues: it goes straight on to the next event. Whatever queued
    while a commit was under way goes into the next one, so a burst of completions costs a
    few commits, not one task and one commit each.
    """

    def __init__(
        self,
        record: Callable[[list[Finish]], Awaitable[None]],
        hand_on: Callable[[str], Awaitable[None]],
    ) -> None:
        self._record = record
        self._hand_on = hand_on
        self._send, self._receive = anyio.create_memory_object_stream[Finish](math.inf)

    def add(self, finish: Finish) -> None:
        self._send.send_nowait(finish)

    def close(self) -> None:
        # What is still queued is still waiting in the database: the next start finds it.
        self._send.close()
        self._receive.close()

    async def run(self) -> None:
        async with self._receive:
            async for first in self._receive:
                batch = [first, *_queued(self._receive)]
                await self._record(batch)
                for finish in batch:
                    log.info(
                        "generation finished",
                        job_id=finish.job_id,
                        generation_id=finish.generation_id,
                        status=finish.status.value,
                        via=finish.source,
                    )
                    await self._hand_on(finish.generation_id)


def _queued(receive: MemoryObjectReceiveStream[Finish]) -> list[Finish]:
    taken: list[Finish] = []
    while True:
        try:
            taken.append(receive.receive_nowait())
        except anyio.WouldBlock:
            return taken
