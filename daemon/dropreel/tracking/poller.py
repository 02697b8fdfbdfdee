"""Polling and reconciliation over REST, used only while the event stream cannot be trusted."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection

import anyio
import structlog

from dropreel.errors import AuthRefused, DropreelError, GenerationUnknown
from dropreel.lifecycle import Observation, Progress, RemoteStatus, Source
from dropreel.providers.base import Provider, RemoteGeneration
from dropreel.tracking.stream import StreamHealth

log = structlog.get_logger("dropreel.poller")

_PARALLEL_GETS = 8


class Reconciler:
    """Learns the state of one provider's waiting generations: what its listing says (one
    or a few requests), then a GET for each id the listing leaves out (so the cost follows
    what finished, not what waits)."""

    def __init__(
        self,
        provider: Provider,
        waiting_ids: Callable[[], Collection[str]],
        on_observation: Callable[[Observation], Awaitable[None]],
    ) -> None:
        self._provider = provider
        self._waiting_ids = waiting_ids
        self._on_observation = on_observation
        self.rounds = 0
        self.requests = 0

    async def reconcile(self) -> None:
        ids = list(self._waiting_ids())
        if not ids:
            return
        self.rounds += 1
        listed: dict[str, RemoteGeneration] | None = None
        try:
            self.requests += 1
            listed = await self._provider.listed(ids)
        except DropreelError as exc:
            log.warning("listing failed; checking each generation", error=str(exc))
        for remote in (listed or {}).values():
            # A row that only says "still running" tells nothing new: with a hundred
            # thousand pending, observing each would cost more than the listing itself.
            if remote.status.is_terminal or remote.progress is not None:
                await self._on_observation(observation_of(remote))
        to_check = ids if listed is None else [i for i in ids if i not in listed]
        limiter = anyio.CapacityLimiter(_PARALLEL_GETS)
        async with anyio.create_task_group() as group:
            for generation_id in to_check:
                group.start_soon(self._check, generation_id, limiter)
        log.info(
            "reconciled",
            provider=self._provider.name,
            waiting=len(ids),
            checked=len(to_check),
            listed=listed is not None,
        )

    async def _check(self, generation_id: str, limiter: anyio.CapacityLimiter) -> None:
        async with limiter:
            self.requests += 1
            try:
                remote = await self._provider.get(generation_id)
            except GenerationUnknown:
                observed = Observation(generation_id, RemoteStatus.UNKNOWN, Source.POLL)
            except AuthRefused as exc:
                log.error(
                    "the provider refused our key", generation_id=generation_id, error=str(exc)
                )
                return
            except DropreelError as exc:
                log.warning("status check failed", generation_id=generation_id, error=str(exc))
                return
            else:
                observed = observation_of(remote)
        await self._on_observation(observed)


def observation_of(remote: RemoteGeneration) -> Observation:
    """What a look-up's answer says of a generation, as an observation from a poll."""
    progress = None
    if remote.progress is not None or remote.cost_usd is not None:
        progress = Progress(remote.progress, remote.cost_usd, remote.cost_is_estimate)
    return Observation(
        remote.generation_id,
        remote.status,
        Source.POLL,
        result_url=remote.result_url,
        error=remote.error,
        progress=progress,
    )


async def run_poller(
    health: StreamHealth,
    reconciler: Reconciler,
    *,
    interval_s: float,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """No polls while the stream is up; one reconcile per (re)connect; polls while it is down."""
    await health.first_attempt_done.wait()
    reconciled_for = 0
    requests_handled = 0
    next_poll_at: float | None = None
    while True:
        if health.reconcile_requests != requests_handled:
            requests_handled = health.reconcile_requests
            await reconciler.reconcile()
            continue
        if health.up:
            next_poll_at = None
            if health.connects != reconciled_for:
                # Events fired while we were not connected are lost: catch up once.
                reconciled_for = health.connects
                await reconciler.reconcile()
                continue
            await health.wait_changed()
            continue
        now = monotonic()
        if next_poll_at is None:
            # The reconnect's reconcile covers a short blip; poll only if it lasts.
            next_poll_at = now + interval_s
        elif now >= next_poll_at:
            next_poll_at = now + interval_s
            await reconciler.reconcile()
            continue
        with anyio.move_on_after(next_poll_at - now):
            await health.wait_changed()


async def run_poll_loop(
    health: StreamHealth,
    reconciler: Reconciler,
    *,
    interval_s: float,
    provider_hint_s: Callable[[], float | None] = lambda: None,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """For a provider with no push channel: look at its pending work every interval (or as
    seldom as the provider asks), sooner when asked (a cancel, a new submission)."""
    while True:
        started = monotonic()
        handled = health.reconcile_requests
        await reconciler.reconcile()
        wait_s = max(interval_s, provider_hint_s() or 0.0) - (monotonic() - started)
        with anyio.move_on_after(max(wait_s, 0.0)):
            while health.reconcile_requests == handled:
                await health.wait_changed()
