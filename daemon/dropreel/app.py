"""The daemon assembled from its real parts: the configured providers over HTTP and the
SQLite state file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

from pydantic import SecretStr

from dropreel.config import Settings
from dropreel.ops.notify import Notifier
from dropreel.providers.base import Provider
from dropreel.providers.registry import connected_providers
from dropreel.service import Daemon
from dropreel.state.store import Store


@asynccontextmanager
async def assembled_daemon(
    settings: Settings,
    keys: Mapping[str, SecretStr] | SecretStr,
    *,
    environ: Mapping[str, str] | None = None,
    notifier: Notifier | None = None,
    provider_wrapper: Callable[[Provider], Provider] | None = None,
) -> AsyncIterator[Daemon]:
    """A Daemon speaking to every configured provider; its HTTP clients and database close
    on exit. One key given alone serves every provider (tests, the demo)."""
    if isinstance(keys, SecretStr):
        keys = dict.fromkeys(settings.providers, keys)
    async with (
        connected_providers(settings, keys, wrapper=provider_wrapper) as providers,
        Store.open(settings.database_path) as store,
    ):
        yield Daemon(settings, store, providers, api_keys=keys, environ=environ, notifier=notifier)
