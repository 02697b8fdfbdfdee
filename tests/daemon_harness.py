"""Running a real Daemon in-process against the simulator on loopback."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
from pydantic import SecretStr

from dropreel.app import assembled_daemon
from dropreel.config import Settings, load_settings, toml_text
from dropreel.service import Daemon
from dropreel_simulator.oxen import Simulator

KEY = SecretStr("sk-test-key-123")

# Appends the JSON it is given on stdin, one line per run, to the file named in argv[1]
# (a hook whose daemon was killed before writing its stdin gets nothing and records nothing).
HOOK_SCRIPT = (
    "import sys; line = sys.stdin.read().strip()\n"
    "if line: open(sys.argv[1], 'a').write(line + '\\n')"
)


def drop_job(inbox: Path, name: str, text: str) -> Path:
    """Put a job file into the inbox the way writers should: aside, then renamed in."""
    inbox.mkdir(parents=True, exist_ok=True)
    aside = inbox / f".{name}.tmp"
    aside.write_text(text, encoding="utf-8")
    return aside.rename(inbox / name)


def write_config(root: Path, simulator: Simulator, **sections: Mapping[str, Any]) -> Path:
    """A config for a daemon in `root`, with quick timings, talking to `simulator`."""
    tables: dict[str, dict[str, Any]] = {
        "oxen": {"base_url": simulator.base_url},
        "inbox": {"settle_s": 0.0},
        "events": {"reconnect_initial_s": 0.05, "reconnect_max_s": 0.3, "idle_timeout_s": 5.0},
        "poll": {"interval_s": 0.3},
        "delivery": {"retry_initial_s": 0.05},
        "hooks": {"retry_initial_s": 0.05},
        "service": {"shutdown_grace_s": 1.0},
    }
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)
    config = root / "dropreel.toml"
    config.write_text(toml_text(tables), encoding="utf-8")
    return config


def hook_argv(log: Path) -> list[str]:
    return [sys.executable, "-c", HOOK_SCRIPT, str(log)]


def settings_for(root: Path, simulator: Simulator, **sections: Mapping[str, Any]) -> Settings:
    return load_settings(write_config(root, simulator, **sections), environ={})


async def run_daemon(
    settings: Settings,
    *,
    until_idle: bool = True,
    stop: anyio.Event | None = None,
    timeout_s: float = 30.0,
    environ: Mapping[str, str] | None = None,
    provider_wrapper: Callable[[Any], Any] | None = None,
) -> Daemon:
    """Run a daemon until idle (or until `stop`), failing the test if it takes too long."""
    hook_environ = environ if environ is not None else {"PATH": "/usr/bin:/bin"}
    async with assembled_daemon(
        settings, KEY, environ=hook_environ, provider_wrapper=provider_wrapper
    ) as daemon:
        with anyio.fail_after(timeout_s):
            await daemon.run(stop or anyio.Event(), until_idle=until_idle)
        return daemon


async def until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Wait for a condition on state another thread changes (the simulator's)."""
    with anyio.fail_after(timeout_s):
        while not condition():  # noqa: ASYNC110 - the state lives in another thread
            await anyio.sleep(0.01)


def hook_lines(log: Path) -> list[dict[str, str]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def sidecar(root: Path, name: str) -> str:
    """The reason beside a refused file in `root`'s failed folder."""
    reason: str = json.loads((root / "failed" / f"{name}.error.json").read_text())["reason"]
    return reason


def db_rows(database: Path, sql: str) -> list[sqlite3.Row]:
    """Rows of the state database, read as a person would while the daemon runs."""
    # Closed at once: a reader left open keeps the daemon from removing its -wal at a stop.
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        return list(db.execute(sql))
