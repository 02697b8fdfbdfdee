"""Progress for the generations someone watches: their provider is asked now and then, and
only a provider that tells progress (Oxen's records do not: its path stays poll-free)."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog

from dropreel.errors import DropreelError
from dropreel.lifecycle import Observation
from dropreel.ops.watching import read_watched
from dropreel.tracking.matching import Matcher
from dropreel.tracking.poller import observation_of
from dropreel.tracking.tracker import Tracker

log = structlog.get_logger("dropreel.onscreen")

# A watched generation is asked about no more often than this: a bar that moves every few
# seconds is live enough, and a screen of twenty costs a few requests a second at most.
ASK_EVERY_S = 3.0
# And no more than this many in one round; the rest wait for the next.
ASKS_PER_ROUND = 8


def ask_every_s(
    reports_progress: bool, poll_interval_s: float | None, provider_hint_s: float | None
) -> float | None:
    """How often a watched generation of this provider is worth asking about; None when
    never: the provider tells no progress, or its own polls come as often anyway."""
    if not reports_progress:
        return None
    every = max(ASK_EVERY_S, provider_hint_s or 0.0)
    if poll_interval_s is not None and poll_interval_s <= every:
        return None
    return every


@dataclass(frozen=True, slots=True)
class Waiting:
    provider: str
    # When its provider was last asked, on a monotonic clock; None if never.
    asked_at: float | None


def asks_due(
    watched: Collection[str],
    waiting: Mapping[str, Waiting],
    every_s: Mapping[str, float | None],
    now: float,
    at_most: int = ASKS_PER_ROUND,
) -> list[str]:
    """The watched generations to ask about now: still waiting, at a provider worth asking
    (`every_s`), not asked within its interval; those asked longest ago first."""
    due = []
    for generation_id in watched:
        found = waiting.get(generation_id)
        if found is None:
            continue
        every = every_s.get(found.provider)
        if every is None:
            continue
        if found.asked_at is None or now - found.asked_at >= every:
            due.append((found.asked_at or -math.inf, generation_id))
    return [generation_id for _, generation_id in sorted(due)[:at_most]]


class ProgressAsks:
    """Each round: read who watches what, and ask the providers about those that are due."""

    def __init__(
        self,
        state_dir: Path,
        trackers: Mapping[str, Tracker],
        matcher: Matcher,
        observe: Callable[[Observation], Awaitable[None]],
        *,
        default_poll_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state_dir = state_dir
        self._trackers = trackers
        self._matcher = matcher
        self._observe = observe
        self._default_poll_s = default_poll_s
        self._now = monotonic
        self._asked_at: dict[str, float] = {}
        # Asks made, by provider; rounds begun.
        self.asks: dict[str, int] = dict.fromkeys(trackers, 0)
        self.rounds = 0

    def _every_s(self) -> dict[str, float | None]:
        every: dict[str, float | None] = {}
        for name, tracker in self._trackers.items():
            connected = tracker.connected
            # A pushing provider is polled only while its stream is down: never, as such.
            polled_every = (
                None if tracker.pushes else connected.poll_interval_s or self._default_poll_s
            )
            every[name] = ask_every_s(
                tracker.provider.capabilities.reports_progress, polled_every, connected.poll_hint()
            )
        return every

    async def round(self) -> None:
        self.rounds += 1
        every_s = self._every_s()
        if not any(every_s.values()):
            return  # no provider worth asking: not even the notes are read
        watched = await anyio.to_thread.run_sync(read_watched, self._state_dir, time.time())
        pending = self._matcher.pending
        for gone in [g for g in self._asked_at if g not in pending]:
            del self._asked_at[gone]
        waiting = {
            g: Waiting(pending[g].provider, self._asked_at.get(g)) for g in watched if g in pending
        }
        now = self._now()
        due = asks_due(watched, waiting, every_s, now)
        async with anyio.create_task_group() as group:
            for generation_id in due:
                self._asked_at[generation_id] = now
                group.start_soon(self._ask, generation_id, waiting[generation_id].provider)

    async def _ask(self, generation_id: str, provider: str) -> None:
        self.asks[provider] += 1
        try:
            remote = await self._trackers[provider].provider.get(generation_id)
        except DropreelError as exc:
            # The provider's polls settle what a failed look-up leaves open.
            log.debug("progress look-up failed", generation_id=generation_id, error=str(exc))
            return
        await self._observe(observation_of(remote))

    async def run(self, interval_s: float) -> None:
        """A round every `interval_s`, less the time the round took."""
        while True:
            started = self._now()
            await self.round()
            await anyio.sleep(max(0.0, interval_s - (self._now() - started)))
