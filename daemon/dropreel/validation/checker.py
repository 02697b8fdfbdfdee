"""Checking requests against their model's schema, fetched through the provider seam and kept
for a while per model; a schema that cannot be had lets the job go ahead unchecked."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from dropreel.errors import DropreelError
from dropreel.validation.problems import request_problems
from dropreel.validation.schema import RequestSchema


class SchemaSource(Protocol):
    """Where a provider's model schemas come from (the provider itself)."""

    async def request_schema(self, model: str) -> RequestSchema | None: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the check found: the problems, or why the request could not be checked."""

    problems: tuple[str, ...] = ()
    unchecked: str | None = None


@dataclass(frozen=True, slots=True)
class _Known:
    until: float
    schema: RequestSchema | None
    why_none: str


class RequestChecker:
    """Checks each request against its model's schema, fetched once per model per `ttl_s`."""

    def __init__(
        self,
        sources: Mapping[str, SchemaSource],
        *,
        ttl_s: float,
        retry_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sources = sources
        self._ttl_s = ttl_s
        # A provider that could not say is asked again this soon, not at every job.
        self._retry_s = min(retry_s, ttl_s)
        self._clock = clock
        self._known: dict[tuple[str, str], _Known] = {}
        self._fetching: dict[tuple[str, str], anyio.Lock] = {}
        self.fetches = 0

    async def check(self, provider: str, body: Mapping[str, Any]) -> Verdict:
        model = body.get("model")
        if not isinstance(model, str):
            return Verdict(unchecked="the request names no model")
        known = await self._schema(provider, model)
        if known.schema is None:
            return Verdict(unchecked=known.why_none)
        return Verdict(tuple(request_problems(known.schema, body)))

    async def _schema(self, provider: str, model: str) -> _Known:
        key = (provider, model)
        lock = self._fetching.setdefault(key, anyio.Lock())
        async with lock:
            known = self._known.get(key)
            if known is not None and self._clock() < known.until:
                return known
            known = await self._fetch(provider, model)
            self._known[key] = known
            return known

    async def _fetch(self, provider: str, model: str) -> _Known:
        source = self._sources.get(provider)
        if source is None:
            return _Known(self._clock() + self._ttl_s, None, f"provider {provider!r} is unknown")
        self.fetches += 1
        try:
            schema = await source.request_schema(model)
        except DropreelError as exc:
            why = f"the schema of {model} could not be fetched from {provider}: {exc}"
            return _Known(self._clock() + self._retry_s, None, why)
        why = f"{provider} publishes no request schema for {model}"
        return _Known(self._clock() + self._ttl_s, schema, why)
