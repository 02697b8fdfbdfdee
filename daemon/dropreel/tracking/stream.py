"""A provider's push stream: one session with a named ending, and whether the stream is up."""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import structlog

from dropreel.backoff import backoff_delay
from dropreel.errors import AuthRefused, NotSent, ProviderError, ReadStalled, TransportFailure
from dropreel.lifecycle import Observation
from dropreel.providers.base import EventFeed

log = structlog.get_logger("dropreel.events")


class Ending(enum.StrEnum):
    """Why a stream session ended."""

    CLOSED_BY_SERVER = "closed_by_server"
    IDLE_TIMEOUT = "idle_timeout"
    CONNECT_FAILED = "connect_failed"
    AUTH_REFUSED = "auth_refused"
    REFUSED = "refused"
    BROKEN = "broken"


@dataclass(frozen=True, slots=True)
class SessionEnd:
    ending: Ending
    detail: str
    connected_for_s: float | None


@dataclass(slots=True)
class ReconnectPolicy:
    """How long to wait before the next connection attempt, given how the last one ended."""

    initial_s: float
    max_s: float
    stable_after_s: float
    attempt: int = 0

    def delay_after(self, end: SessionEnd, rand: Callable[[], float] = random.random) -> float:
        # Start over only after a connection that held: a stream that connects, then drops
        # at once, must not reconnect at full speed forever.
        if end.connected_for_s is not None and end.connected_for_s >= self.stable_after_s:
            self.attempt = 0
        delay = backoff_delay(self.attempt, initial_s=self.initial_s, max_s=self.max_s, rand=rand)
        if end.ending is Ending.AUTH_REFUSED:
            # A refused key stays refused until a person acts: retrying fast only hammers.
            delay = max(delay, self.max_s)
        self.attempt += 1
        return delay


class StreamHealth:
    """Whether the stream is up, with a way to wait for that to change."""

    def __init__(self) -> None:
        self.up = False
        # When `up` last changed (wall clock: people read it as a time of day).
        self.since = time.time()
        self.first_attempt_done = anyio.Event()
        self._changed = anyio.Event()
        self.connects = 0
        self.events_received = 0
        self.reconcile_requests = 0

    def set(self, up: bool) -> None:
        if up:
            self.connects += 1
        if up != self.up:
            self.up = up
            self.since = time.time()
            self._changed.set()
            self._changed = anyio.Event()

    def request_reconcile(self) -> None:
        """Ask the poller for one reconcile now, stream up or not (new ids to catch up on)."""
        self.reconcile_requests += 1
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_changed(self) -> None:
        await self._changed.wait()


async def run_session(
    feed: EventFeed,
    health: StreamHealth,
    on_observation: Callable[[Observation], Awaitable[None]],
    *,
    monotonic: Callable[[], float] = time.monotonic,
) -> SessionEnd:
    """Hold one stream connection until it ends; say why it ended."""
    connected_at: float | None = None

    def held() -> float | None:
        return None if connected_at is None else monotonic() - connected_at

    try:
        async with feed.connect() as events:
            connected_at = monotonic()
            health.set(True)
            health.first_attempt_done.set()
            log.info("stream connected")
            async for meaning in events:
                health.events_received += 1
                if isinstance(meaning, str):
                    log.debug("event ignored", reason=meaning)
                    continue
                await on_observation(meaning)
        return SessionEnd(Ending.CLOSED_BY_SERVER, "the server ended the stream", held())
    except AuthRefused as exc:
        return SessionEnd(Ending.AUTH_REFUSED, str(exc), held())
    except ProviderError as exc:
        return SessionEnd(Ending.REFUSED, str(exc), held())
    except ReadStalled:
        return SessionEnd(Ending.IDLE_TIMEOUT, "no bytes within the idle timeout", held())
    except NotSent as exc:
        return SessionEnd(Ending.CONNECT_FAILED, str(exc), held())
    except TransportFailure as exc:
        # A wrong content type, a cut connection, an event past the size limit.
        return SessionEnd(Ending.BROKEN, str(exc), held())
    finally:
        health.set(False)
        health.first_attempt_done.set()
