"""The daemon assembled from its real parts: Oxen over HTTP and the SQLite state file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx
from pydantic import SecretStr

from dropreel.config import Settings
from dropreel.notify import Notifier
from dropreel.oxen import OxenClient
from dropreel.service import Daemon
from dropreel.store import Store


@asynccontextmanager
async def oxen_daemon(
    settings: Settings,
    api_key: SecretStr,
    *,
    environ: Mapping[str, str] | None = None,
    notifier: Notifier | None = None,
) -> AsyncIterator[Daemon]:
    """A Daemon speaking to Oxen as configured; its HTTP client and database close on exit."""
    timeout = httpx.Timeout(settings.oxen.read_timeout_s, connect=settings.oxen.connect_timeout_s)
    async with (
        httpx.AsyncClient(timeout=timeout, follow_redirects=True) as http,
        Store.open(settings.database_path) as store,
    ):
        client = OxenClient(
            http,
            base_url=str(settings.oxen.base_url),
            api_key=api_key,
            idle_timeout_s=settings.events.idle_timeout_s,
        )
        yield Daemon(
            settings, store, client, client, api_key=api_key, environ=environ, notifier=notifier
        )
