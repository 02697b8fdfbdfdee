"""Learning of one provider's completions: its push stream where it has one (polling only
while that is down), else polling at its interval."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import structlog

from dropreel.config import Settings
from dropreel.lifecycle import Observation
from dropreel.providers.registry import Connected
from dropreel.tracking.matching import Matcher
from dropreel.tracking.poller import Reconciler, run_poll_loop, run_poller
from dropreel.tracking.stream import Ending, ReconnectPolicy, StreamHealth, run_session

log = structlog.get_logger("dropreel.events")


class Tracker:
    """One provider's stream and polls, feeding observations to `observe`."""

    def __init__(
        self,
        name: str,
        connected: Connected,
        matcher: Matcher,
        observe: Callable[[Observation], Awaitable[None]],
        settings: Settings,
    ) -> None:
        self.name = name
        self.connected = connected
        self.provider = connected.provider
        self.health = StreamHealth()
        self.reconciler = Reconciler(connected.provider, lambda: matcher.waiting_for(name), observe)
        self._observe = observe
        self._settings = settings
        if connected.feed is None:
            # No stream to wait for: submissions may start at once.
            self.health.first_attempt_done.set()

    @property
    def pushes(self) -> bool:
        return self.connected.feed is not None

    async def run(self) -> None:
        async with anyio.create_task_group() as group:
            if self.connected.feed is not None:
                group.start_soon(self._supervise_stream)
                group.start_soon(
                    lambda: run_poller(
                        self.health, self.reconciler, interval_s=self._settings.poll.interval_s
                    )
                )
            else:
                interval_s = self.connected.poll_interval_s or self._settings.poll.interval_s
                group.start_soon(
                    lambda: run_poll_loop(
                        self.health,
                        self.reconciler,
                        interval_s=interval_s,
                        provider_hint_s=self.connected.poll_hint,
                    )
                )

    async def _supervise_stream(self) -> None:
        feed = self.connected.feed
        assert feed is not None
        settings = self._settings.events
        policy = ReconnectPolicy(
            initial_s=settings.reconnect_initial_s,
            max_s=settings.reconnect_max_s,
            stable_after_s=settings.stable_after_s,
        )
        while True:
            end = await run_session(feed, self.health, self._observe)
            delay = policy.delay_after(end)
            (log.error if end.ending is Ending.AUTH_REFUSED else log.warning)(
                "stream down",
                provider=self.name,
                ending=end.ending.value,
                detail=end.detail,
                retry_in_s=round(delay, 2),
            )
            await anyio.sleep(delay)
