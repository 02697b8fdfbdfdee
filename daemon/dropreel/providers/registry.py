"""Every configured provider, connected: `kind` picks the adapter, each with its own HTTP
client, request ceiling and key (sent only to its own `base_url`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

from dropreel.config import ProviderSettings, Settings
from dropreel.providers.base import EventFeed, Provider
from dropreel.providers.openai_videos.client import OpenAIVideosClient
from dropreel.providers.oxen.client import OxenClient, rest_base
from dropreel.providers.ratelimit import RequestGate


@dataclass(frozen=True, slots=True)
class Connected:
    """One provider ready for use, with what the stages need besides its calls."""

    provider: Provider
    # Its push channel; None for poll-only providers.
    feed: EventFeed | None
    # Waits for a turn under the provider's request ceiling (taken before a POST's claim).
    wait_turn: Callable[[], Awaitable[None]] | None = None
    # Poll-only providers are looked at this often; push-fed ones only while the feed is down.
    poll_interval_s: float | None = None
    # The provider's own word on how often to look, where it gives one.
    poll_hint: Callable[[], float | None] = lambda: None


def _timeout(config: ProviderSettings) -> httpx.Timeout:
    return httpx.Timeout(config.read_timeout_s, connect=config.connect_timeout_s)


def api_prefix(config: ProviderSettings) -> str:
    """Where the provider's API lives: every request under it passes the ceiling."""
    base = str(config.base_url)
    return rest_base(base) if config.kind == "oxen" else base.rstrip("/")


def connect(
    name: str,
    config: ProviderSettings,
    http: httpx.AsyncClient,
    key: SecretStr,
    *,
    idle_timeout_s: float,
) -> Connected:
    """The adapter `config.kind` names, speaking over `http`."""
    base = str(config.base_url)
    if config.kind == "oxen":
        oxen = OxenClient(
            http, base_url=base, api_key=key, idle_timeout_s=idle_timeout_s, name=name
        )
        return Connected(oxen, oxen)
    videos = OpenAIVideosClient(
        http,
        name=name,
        base_url=base,
        api_key=key,
        idempotency=config.idempotency,
        idempotency_key_field=config.idempotency_key_field,
    )
    return Connected(
        videos,
        None,
        poll_interval_s=config.poll_interval_s,
        poll_hint=lambda: videos.poll_after_s,
    )


@asynccontextmanager
async def connected_providers(
    settings: Settings,
    keys: Mapping[str, SecretStr],
    *,
    wrapper: Callable[[Provider], Provider] | None = None,
    only: str | None = None,
) -> AsyncIterator[dict[str, Connected]]:
    """Every configured provider (or `only` the one named), connected; their HTTP clients
    close on exit.

    `wrapper` lets tests put a misbehaving provider in front of each real one.
    """
    found: dict[str, Connected] = {}
    async with AsyncExitStack() as stack:
        for name, config in settings.providers.items():
            if only is not None and name != only:
                continue
            gate = RequestGate(config.max_requests_per_s, api_prefixes=(api_prefix(config),))
            http = await stack.enter_async_context(
                httpx.AsyncClient(
                    timeout=_timeout(config),
                    follow_redirects=True,
                    event_hooks={"request": [gate.on_request]},
                )
            )
            made = connect(
                name, config, http, keys[name], idle_timeout_s=settings.events.idle_timeout_s
            )
            provider = wrapper(made.provider) if wrapper else made.provider
            found[name] = Connected(
                provider, made.feed, gate.wait_turn, made.poll_interval_s, made.poll_hint
            )
        yield found
