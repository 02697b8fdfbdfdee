"""Progress for what someone watches: which generations to ask about now (a pure decision),
and a real daemon that asks a provider reporting progress about the watched ones alone, and
Oxen, whose records tell no progress, nothing while its stream is up (which it publishes)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

import anyio
import pytest

from dropreel.app import assembled_daemon
from dropreel.config import Settings
from dropreel.ops.live import read_live
from dropreel.ops.watching import WatchNote, leave_note, remove_note
from dropreel.service import Daemon
from dropreel.tracking.onscreen import ASK_EVERY_S, Waiting, ask_every_s, asks_due
from dropreel_simulator.oxen import Simulator

from .daemon_harness import KEY, drop_job, settings_for, until

NOW = 1000.0


@pytest.mark.parametrize(
    ("reports_progress", "poll_interval_s", "hint_s", "every"),
    [
        (False, None, None, None),  # Oxen: its records tell no progress
        (False, 60.0, None, None),
        (True, 60.0, None, ASK_EVERY_S),
        (True, 60.0, 10.0, 10.0),  # the provider asked to be looked at less often
        (True, 60.0, 0.5, ASK_EVERY_S),
        (True, ASK_EVERY_S, None, None),  # its own polls come as often anyway
        (True, 1.0, None, None),
    ],
)
def test_how_often_a_watched_generation_is_worth_asking_about(
    reports_progress: bool, poll_interval_s: float | None, hint_s: float | None, every: float | None
) -> None:
    assert ask_every_s(reports_progress, poll_interval_s, hint_s) == every


EVERY = {"lumenfall": 3.0, "oxen": None}


@pytest.mark.parametrize(
    ("watched", "waiting", "due"),
    [
        # Watched, waiting at a provider worth asking, never asked: now.
        (["v1"], {"v1": Waiting("lumenfall", None)}, ["v1"]),
        # Not on anyone's screen: never.
        ([], {"v1": Waiting("lumenfall", None)}, []),
        # Watched but no longer waiting (finished, or not ours): never.
        (["v1"], {}, []),
        # At Oxen: never, however long it waits.
        (["o1"], {"o1": Waiting("oxen", None)}, []),
        # At a provider missing from the paces (not configured any more): never.
        (["x1"], {"x1": Waiting("gone", None)}, []),
        # Asked a moment ago: not yet; asked an interval ago: again.
        (["v1"], {"v1": Waiting("lumenfall", NOW - 1.0)}, []),
        (["v1"], {"v1": Waiting("lumenfall", NOW - 3.0)}, ["v1"]),
        # The longest unasked first, and no more than a round's worth.
        (
            ["v1", "v2", "v3", "v4"],
            {
                "v1": Waiting("lumenfall", NOW - 5.0),
                "v2": Waiting("lumenfall", None),
                "v3": Waiting("lumenfall", NOW - 9.0),
                "v4": Waiting("lumenfall", NOW - 4.0),
            },
            ["v2", "v3", "v1"],
        ),
    ],
)
def test_which_watched_generations_to_ask_about_now(
    watched: list[str], waiting: dict[str, Waiting], due: list[str]
) -> None:
    assert asks_due(watched, waiting, EVERY, NOW, at_most=3) == due


@asynccontextmanager
async def serving(settings: Settings, simulator: Simulator) -> AsyncIterator[Daemon]:
    """A daemon running until the block ends, its event stream connected."""
    stop = anyio.Event()
    async with (
        assembled_daemon(settings, KEY, environ={}) as daemon,
        anyio.create_task_group() as group,
    ):
        group.start_soon(daemon.run, stop)
        await until(lambda: simulator.streams_open == 1)
        yield daemon
        stop.set()


async def rounds_pass(daemon: Daemon, count: int) -> None:
    """Until the daemon has begun `count` more rounds of reading who watches what."""
    start = daemon.progress_asks.rounds
    await until(lambda: daemon.progress_asks.rounds >= start + count)


async def test_an_oxen_only_daemon_asks_nothing_for_a_watcher_while_its_stream_is_up(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.options.hold = True
    settings = settings_for(tmp_path, simulator, service={"heartbeat_s": 0.05})
    async with serving(settings, simulator) as daemon:
        drop_job(tmp_path / "inbox", "long.txt", "a long one")
        await until(lambda: len(daemon.matcher.pending) == 1)
        [generation_id] = daemon.matcher.pending
        leave_note(settings.state_dir, WatchNote((generation_id,), time.time() + 60))
        await rounds_pass(daemon, 20)
        # What watch shows of the stream: published at the heartbeat.
        live = read_live(settings.state_dir)
        assert live is not None and live.providers["oxen"].up and live.waiting == 1
    assert daemon.progress_asks.asks == {"oxen": 0}
    assert simulator.polls_while_streaming() == 0


async def test_a_provider_reporting_progress_is_asked_about_the_watched_generations_only(
    tmp_path: Path, simulator: Simulator
) -> None:
    # Its own polls are a minute apart: whatever progress moves sooner was asked for.
    simulator.videos.options.complete_after_s = (60.0, 60.0)
    settings = settings_for(
        tmp_path,
        simulator,
        service={"heartbeat_s": 0.05},
        **{
            "providers.lumenfall": {
                "kind": "openai-videos",
                "base_url": simulator.base_url + "/v1",
                "poll_interval_s": 60.0,
            }
        },
    )
    job = {"prompt": "slow", "num_generations": 2, "dropreel": {"provider": "lumenfall"}}
    async with serving(settings, simulator) as daemon:
        drop_job(tmp_path / "inbox", "pair.json", json.dumps(job))
        await until(lambda: len(daemon.matcher.pending) == 2)
        watched, unwatched = sorted(daemon.matcher.pending)
        await rounds_pass(daemon, 10)
        assert daemon.progress_asks.asks["lumenfall"] == 0, "asked while no one watched"

        leave_note(settings.state_dir, WatchNote((watched,), time.time() + 60))
        # The simulated video runs from a third of its minute: progress shows from 20 s on.
        await until(lambda: progress(settings.database_path, watched) > 0, timeout_s=45)
        remove_note(settings.state_dir)
    looked_up = {r.generation_id for r in simulator.requests if r.kind == "video-get"}
    assert looked_up == {watched}
    assert progress(settings.database_path, unwatched) == 0
    assert daemon.progress_asks.asks["oxen"] == 0
    assert simulator.polls_while_streaming() == 0


def progress(database: Path, generation_id: str) -> int:
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        found = db.execute(
            "SELECT progress FROM generations WHERE generation_id = ?", (generation_id,)
        ).fetchone()
    return int(found[0] or 0)
