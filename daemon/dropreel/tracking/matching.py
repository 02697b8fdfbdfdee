"""Which observations concern which of our generations, including ones that arrive early."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dropreel.clock import ElapsedClock, process_clock
from dropreel.lifecycle import Observation, RemoteStatus


@dataclass(slots=True)
class Pending:
    """A generation we wait for, as the matcher knows it."""

    job_id: str
    status: RemoteStatus
    enqueued_at: float
    provider: str = "oxen"
    # Last progress recorded (0-100), where the provider reports it.
    progress: int | None = None


class Matcher:
    """In-memory index of waiting generations and a short buffer of early events.

    Synchronous on purpose: with no await between `register` and the event path's
    `route`, an event can never fall between a POST's answer being recorded and
    its generation ids becoming known.
    """

    def __init__(
        self,
        *,
        early_ttl_s: float = 600.0,
        early_max: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
        clock: ElapsedClock = process_clock,
    ) -> None:
        self.pending: dict[str, Pending] = {}
        self._early: OrderedDict[str, tuple[float, Observation]] = OrderedDict()
        self._ttl_s = early_ttl_s
        self._max = early_max
        self._now = monotonic
        self._clock = clock

    def route(self, observed: Observation, *, keep_if_unknown: bool) -> Pending | None:
        """The waiting generation this observation is about; unknown ones may be kept."""
        found = self.pending.get(observed.generation_id)
        if found is None and keep_if_unknown:
            self._keep(observed)
        return found

    def _keep(self, observed: Observation) -> None:
        now = self._now()
        self._early[observed.generation_id] = (now, observed)
        self._early.move_to_end(observed.generation_id)
        while self._early:
            oldest_at, _ = next(iter(self._early.values()))
            if len(self._early) <= self._max and now - oldest_at <= self._ttl_s:
                break
            self._early.popitem(last=False)

    def register(
        self,
        job_id: str,
        generations: Iterable[tuple[str, RemoteStatus]],
        *,
        enqueued_at: float | None = None,
        provider: str = "oxen",
    ) -> list[Observation]:
        """Start waiting for these generations; return events that came before we knew them."""
        early: list[Observation] = []
        since = self._clock.now() if enqueued_at is None else enqueued_at
        for generation_id, status in generations:
            self.pending[generation_id] = Pending(job_id, status, since, provider)
            kept = self._early.pop(generation_id, None)
            if kept is not None:
                early.append(kept[1])
        return early

    def overdue(self, deadline_s: float) -> list[str]:
        """Waiting generations older than `deadline_s`, by a clock that wall-clock jumps
        cannot move (a clock set forward must not cancel every running generation)."""
        return [
            g
            for g, p in self.pending.items()
            if self._clock.elapsed_since(p.enqueued_at) > deadline_s
        ]

    def waiting_for(self, provider: str) -> list[str]:
        """The ids of the generations we wait for at one provider."""
        return [g for g, p in self.pending.items() if p.provider == provider]

    def forget(self, generation_id: str) -> None:
        self.pending.pop(generation_id, None)

    @property
    def early_count(self) -> int:
        return len(self._early)
