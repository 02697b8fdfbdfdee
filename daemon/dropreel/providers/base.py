"""The seam between dropreel and a generation provider."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from dropreel.lifecycle import RemoteStatus


@dataclass(frozen=True, slots=True)
class RemoteGeneration:
    """A generation as the provider's REST API describes it."""

    generation_id: str
    status: RemoteStatus
    result_url: str | None = None
    error: str | None = None
    enqueued_at: float | None = None
    # The row as the provider sent it (echoed request parameters among its fields).
    row: Mapping[str, Any] = field(default_factory=dict)


class Provider(Protocol):
    """What dropreel needs from a provider's REST API."""

    async def enqueue(self, body: Mapping[str, Any]) -> list[RemoteGeneration]:
        """Create the generations a job asks for. Raises on anything but success."""
        ...

    async def get(self, generation_id: str) -> RemoteGeneration:
        """The current state of one generation; raises GenerationUnknown if it is forgotten."""
        ...

    async def list_active(self) -> set[str] | None:
        """Ids of the caller's queued/processing generations, or None if it cannot tell."""
        ...

    async def cancel(self, generation_id: str) -> None:
        """Ask the provider to stop a queued or processing generation."""
        ...

    async def list_recent(self) -> list[RemoteGeneration]:
        """Every generation of the caller's the provider will list, with request echoes."""
        ...

    def open_download(
        self, url: str, *, offset: int = 0
    ) -> AbstractAsyncContextManager[httpx.Response]:
        """Stream a result; the response is checked for success."""
        ...


class EventFeed(Protocol):
    """A provider's push channel of completion notices (absent for poll-only providers)."""

    def connect(self) -> AbstractAsyncContextManager[AsyncIterator[tuple[str, str]]]:
        """Open the stream; iterate (event type, data) pairs. Raises on connect failure."""
        ...
