"""The daemon assembled from its real parts: Oxen over HTTP and the SQLite state file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import httpx
from pydantic import SecretStr

from dropreel.config import Settings
from dropreel.ops.notify import Notifier
from dropreel.providers.base import Provider
from dropreel.providers.oxen.client import OxenClient
from dropreel.providers.ratelimit import RequestGate
from dropreel.service import Daemon
from dropreel.state.store import Store


@asynccontextmanager
async def oxen_daemon(
    settings: Settings,
    api_key: SecretStr,
    *,
    environ: Mapping[str, str] | None = None,
    notifier: Notifier | None = None,
    provider_wrapper: Callable[[Provider], Provider] | None = None,
) -> AsyncIterator[Daemon]:
    """A Daemon speaking to Oxen as configured; its HTTP client and database close on exit."""
    timeout = httpx.Timeout(settings.oxen.read_timeout_s, connect=settings.oxen.connect_timeout_s)
    gate = RequestGate(settings.oxen.max_requests_per_s, api_prefixes=(settings.rest_base,))
    async with (
        httpx.AsyncClient(
            timeout=timeout, follow_redirects=True, event_hooks={"request": [gate.on_request]}
        ) as http,
        Store.open(settings.database_path) as store,
    ):
        client = OxenClient(
            http,
            base_url=str(settings.oxen.base_url),
            api_key=api_key,
            idle_timeout_s=settings.events.idle_timeout_s,
        )
        # Tests put a misbehaving provider in front of the real one here.
        provider = provider_wrapper(client) if provider_wrapper else client
        yield Daemon(
            settings,
            store,
            provider,
            client,
            api_key=api_key,
            environ=environ,
            notifier=notifier,
            wait_turn=gate.wait_turn,
        )
