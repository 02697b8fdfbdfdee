"""The seam between dropreel and a generation provider: dropreel's own types only.

A provider's failures arrive as dropreel's errors (errors.py), which say whether the call
may be retried (RetryableProviderError, AuthRefused, ProviderUnreachable), may have acted
(AmbiguousAnswer, a cut connection) or was refused (RequestRefused).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from dropreel.lifecycle import Observation, RemoteStatus
from dropreel.validation.schema import RequestSchema


@dataclass(frozen=True, slots=True)
class ImageInput:
    """A local image a job sends to its provider."""

    name: str
    media_type: str
    data: bytes

    def data_uri(self) -> str:
        encoded = base64.b64encode(self.data).decode("ascii")
        return f"data:{self.media_type};base64,{encoded}"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider can do, declared once by its adapter."""

    # A push channel of completions (an EventFeed); without one, pending work is polled.
    push_feed: bool
    # A create carrying the same key is replayed, not made twice: a lost answer is resent.
    idempotency_keys: bool
    # Whether a running generation can be stopped (best effort where the API says so).
    cancel: bool
    # How many generations one request may ask for (`num_generations`); a job asking more
    # of a provider that makes one per request gets one request each.
    generations_per_request: int
    # Whether a look-up (`get`) tells how far a running generation is (`progress`): only
    # then is it worth asking about the generations someone watches.
    reports_progress: bool


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
    # 0-100 where the provider reports it.
    progress: int | None = None
    # US dollars: the provider's figure, or its running estimate (cost_is_estimate).
    cost_usd: float | None = None
    cost_is_estimate: bool = False


@dataclass(frozen=True, slots=True)
class Pricing:
    """What a model costs per second of video output, in US dollars, as its provider says."""

    per_second_usd: float
    # The rate at the high resolution, where the provider gives one.
    per_second_high_res_usd: float | None = None
    # The output length the model makes when a request names none, where it says.
    default_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """What a provider publishes about a model, from one look-up: what its requests may carry
    and what it costs (None where it publishes nothing)."""

    schema: RequestSchema | None = None
    pricing: Pricing | None = None


class ModelSource(Protocol):
    """Where a model's facts come from (the provider itself)."""

    async def model_facts(self, model: str) -> ModelFacts:
        """What the provider publishes about `model`. Raises if it cannot be asked."""
        ...


@dataclass(frozen=True, slots=True)
class Adopt:
    """A lost POST's generations, found."""

    generations: tuple[RemoteGeneration, ...]


@dataclass(frozen=True, slots=True)
class Unsettled:
    """Why a lost POST's generations cannot be told apart from others (a person decides)."""

    reason: str


Recovery = Adopt | Unsettled


class ResultStream(Protocol):
    """A result being downloaded: the answer's status and headers, then its raw bytes (as
    served, never decoded). Failures while reading raise TransportFailure."""

    status_code: int
    headers: Mapping[str, str]

    def chunks(self) -> AsyncIterator[bytes]: ...


class Provider(Protocol):
    """What dropreel needs from a provider's API."""

    name: str
    capabilities: Capabilities

    async def enqueue(
        self, body: Mapping[str, Any], *, idempotency_key: str, image: ImageInput | None = None
    ) -> list[RemoteGeneration]:
        """Create the generations a job asks for, sending `image` as the provider's image
        input. Raises on anything but success."""
        ...

    async def get(self, generation_id: str) -> RemoteGeneration:
        """The current state of one generation; raises GenerationUnknown if it is forgotten."""
        ...

    async def listed(self, ids: Collection[str]) -> dict[str, RemoteGeneration] | None:
        """What the provider's listing says of `ids`, in as few requests as it allows; ids
        left out are looked up one by one. None if the provider offers no listing."""
        ...

    async def cancel(self, generation_id: str) -> None:
        """Ask the provider to stop a queued or processing generation."""
        ...

    async def recover_lost_post(
        self,
        request: Mapping[str, Any],
        posted_at: float,
        *,
        window_s: float,
        taken: Collection[str],
    ) -> Recovery:
        """What a POST whose answer was lost created (providers without idempotency keys)."""
        ...

    async def model_facts(self, model: str) -> ModelFacts:
        """What a request for `model` may carry (its whole POST body) and what it costs, in
        one look-up; empty facts if the provider publishes nothing. Raises if it cannot be
        asked."""
        ...

    def open_download(
        self, url: str, *, offset: int = 0
    ) -> AbstractAsyncContextManager[ResultStream]:
        """Stream a result (a URL the provider gave); refusals raise, as ResultUrlRefused
        where a fresh URL may help."""
        ...


class EventFeed(Protocol):
    """A provider's push channel of completion notices (absent for poll-only providers)."""

    def connect(self) -> AbstractAsyncContextManager[AsyncIterator[Observation | str]]:
        """Open the stream; iterate what each event means (an observation, or why it is
        ignored). Raises on connect failure."""
        ...
