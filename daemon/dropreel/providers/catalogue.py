"""Each model's facts (its request schema and its price), asked of its provider once per
time-to-live and shared by the request check at intake and the budget at submission: one
look-up per model, whoever needs it first."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio
import structlog

from dropreel.errors import DropreelError
from dropreel.providers.base import ModelFacts, ModelSource

log = structlog.get_logger("dropreel.models")

NOTHING = ModelFacts()


@dataclass(frozen=True, slots=True)
class Looked:
    """A model's facts as last looked up; `error` says why they could not be had."""

    facts: ModelFacts
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Kept:
    until: float
    looked: Looked


class ModelCatalogue:
    """The model facts of every provider, fetched once per model per `ttl_s` (a failed
    look-up is tried again after `retry_s`, not at every job)."""

    def __init__(
        self,
        sources: Mapping[str, ModelSource],
        *,
        ttl_s: float,
        retry_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        log_failures: bool = True,
    ) -> None:
        self._sources = sources
        # The daemon says once why a model's jobs go unchecked and unpriced; `dropreel check`
        # says it on each file's line instead.
        self._log_failures = log_failures
        self._ttl_s = ttl_s
        self._retry_s = min(retry_s, ttl_s)
        self._clock = clock
        self._kept: dict[tuple[str, str], _Kept] = {}
        self._fetching: dict[tuple[str, str], anyio.Lock] = {}
        self.fetches = 0

    async def look(self, provider: str, model: str) -> Looked:
        """The model's facts at `provider`; empty, with the reason, if they cannot be had."""
        if provider not in self._sources:
            return Looked(NOTHING, f"provider {provider!r} is unknown")
        key = (provider, model)
        lock = self._fetching.setdefault(key, anyio.Lock())
        async with lock:  # jobs wanting the same model at once ask once
            kept = self._kept.get(key)
            if kept is not None and self._clock() < kept.until:
                return kept.looked
            kept = await self._fetch(provider, model)
            self._kept[key] = kept
            return kept.looked

    async def _fetch(self, provider: str, model: str) -> _Kept:
        self.fetches += 1
        try:
            facts = await self._sources[provider].model_facts(model)
        except DropreelError as exc:
            error = str(exc) or type(exc).__name__
            if self._log_failures:
                log.warning(
                    "cannot learn the model's schema and price; its jobs go unchecked and count"
                    " as of unknown price until it is asked again",
                    provider=provider,
                    model=model,
                    error=error,
                    retry_s=self._retry_s,
                )
            return _Kept(self._clock() + self._retry_s, Looked(NOTHING, error))
        return _Kept(self._clock() + self._ttl_s, Looked(facts))
