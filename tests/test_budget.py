"""Spend and the budget cap, with real parts: the store's reservation on a real SQLite file,
and a real daemon against the simulator, whose POSTs are counted."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from dropreel.app import assembled_daemon
from dropreel.cli import admin
from dropreel.config import BudgetSettings
from dropreel.errors import AmbiguousAnswer
from dropreel.lifecycle import JobState, RemoteStatus
from dropreel.providers.base import RemoteGeneration
from dropreel.service import Daemon
from dropreel.spend.budget import periods
from dropreel.state.records import SCHEMA_VERSION
from dropreel.state.spending import Reservation
from dropreel.state.store import Store
from dropreel_simulator.oxen import Simulator

from .daemon_harness import KEY, drop_job, run_daemon, settings_for, until, write_config
from .test_e2e import dropreel, start_daemon, wait_for
from .test_store import claim

DAY = periods(time.time())


def capped(estimate: float, daily: float | None = 5.0) -> Reservation:
    return Reservation(estimate, daily, None, DAY.day_start, DAY.month_start)


async def accepted(store: Store, *job_ids: str) -> None:
    for job_id in job_ids:
        await claim(store, job_id, stem=job_id)
        await store.set_job_state(job_id, JobState.ACCEPTED)


async def test_claims_at_once_cannot_all_fit_under_the_cap(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "db.sqlite3") as store:
        ids = [f"j{n}" for n in range(6)]
        await accepted(store, *ids)
        won: list[str] = []

        async def take(job_id: str) -> None:
            if await store.claim_for_submission(job_id, capped(2.0)):
                won.append(job_id)

        # Six workers claim at once: each would fit alone ($2 of $5), two together only.
        async with anyio.create_task_group() as group:
            for job_id in ids:
                group.start_soon(take, job_id)
        assert len(won) == 2
        assert await store.budget_used(DAY.day_start, DAY.month_start) == (4.0, 4.0)
        losers = [j for j in ids if j not in won]
        for job_id in losers:
            job = await store.job(job_id)
            assert job is not None and job.state is JobState.ACCEPTED, "left to be held"


async def test_what_counts_as_spent_or_reserved(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "db.sqlite3") as store:
        await accepted(store, "sent", "lost", "answered", "refused", "waiting")
        for job_id in ("sent", "lost", "answered", "refused"):
            assert await store.claim_for_submission(job_id, capped(1.0, daily=None))
        # Its POST's answer was lost: it may have been billed, so it stays reserved.
        await store.set_job_state("lost", JobState.NEEDS_ATTENTION, error="answer lost")
        # Answered: its generations' costs count instead of its reservation.
        await store.record_submission(
            "answered",
            [("g1", RemoteStatus.QUEUED), ("g2", RemoteStatus.QUEUED)],
            estimate_each_usd=0.25,
        )
        # Refused by the provider (nothing made): its reservation is released.
        await store.set_job_state("refused", JobState.FAILED, error="400")
        assert await store.budget_used(DAY.day_start, DAY.month_start) == (2.5, 2.5)
        # Nothing of it was today or this month once those periods begin later.
        assert await store.budget_used(time.time() + 10, time.time() + 10) == (0.0, 0.0)
        generations = await store.generations_of("answered")
        assert [(g.cost_usd, g.cost_is_estimate) for g in generations] == [
            (0.25, True),
            (0.25, True),
        ]


async def test_a_version_4_database_gains_the_reservation(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with Store.open(path) as store:
        await accepted(store, "old")
    with closing(sqlite3.connect(path)) as raw:
        # Back to version 4's shape: without what versions 5 (and 6) added.
        for statement in (
            "DROP INDEX generations_enqueued",
            "ALTER TABLE jobs DROP COLUMN reserved_usd",
            "DROP INDEX generations_webhook_due",
            "ALTER TABLE generations DROP COLUMN webhook_state",
            "ALTER TABLE generations DROP COLUMN webhook_attempts",
            "ALTER TABLE generations DROP COLUMN webhook_error",
            "PRAGMA user_version = 4",
        ):
            raw.execute(statement)
        raw.commit()
    async with Store.open(path) as store:
        assert await store.claim_for_submission("old", capped(1.0))
        job = await store.job("old")
        assert job is not None and job.reserved_usd == 1.0
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_a_job_over_the_cap_is_held_and_goes_when_the_cap_is_raised(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = settings_for(tmp_path, simulator, budget={"daily_usd": 3.0})
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    # $0.30/s at the simulator: 4 s cost $1.20, and 8 s $2.40 more would cross $3.00.
    drop_job(inbox, "first.json", json.dumps({"prompt": "first", "seconds": "4"}))
    async with assembled_daemon(settings, KEY, environ={}) as daemon:
        stop = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(daemon.run, stop)
            await until(lambda: (outbox / "first.result.json").exists())
            drop_job(inbox, "second.json", json.dumps({"prompt": "second", "seconds": "8"}))
            await until(lambda: job_error(settings.database_path, "second") is not None)
            await anyio.sleep(0.3)
            assert simulator.count("enqueue") == 1, "never a POST over the cap"
            assert job_error(settings.database_path, "second") == (
                "budget: $1.20 spent or reserved today + $2.40 for this job would cross the "
                "daily cap of $3.00; it goes ahead when the day rolls over or the cap is raised"
            )
            table = await admin.status(settings, as_json=False)
            assert "held" in table and "$1.20 spent or reserved today" in table
            [first] = [
                json.loads(line)
                for line in (await admin.status(settings, as_json=True)).splitlines()
                if '"first"' in line
            ]
            story = await admin.show(settings, first["short_id"])
            assert "cost       $1.20 (estimate)" in story
            later = daemon.reload(settings_for(tmp_path, simulator, budget={"daily_usd": 10.0}))
            assert later == []
            await until(lambda: (outbox / "second.result.json").exists())
            stop.set()
    assert simulator.count("enqueue") == 2
    assert simulator.count("model") == 1, "the price is asked once per model"
    first = json.loads((outbox / "first.result.json").read_text())
    assert first["cost_usd"] == 1.2
    assert first["generations"][0]["cost_is_estimate"] is True
    assert json.loads((outbox / "second.result.json").read_text())["cost_usd"] == 2.4


def job_error(database: Path, stem: str) -> str | None:
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT error FROM jobs WHERE stem = ?", (stem,)).fetchone()
    except sqlite3.OperationalError:
        return None  # not made yet by the daemon starting up
    return row[0] if row else None


@pytest.mark.parametrize("unknown_price", ["allow", "hold"])
async def test_a_job_of_unknown_price(
    tmp_path: Path, simulator: Simulator, unknown_price: str
) -> None:
    sora = simulator.models["openai-sora-2-pro"]
    simulator.models["openai-sora-2-pro"] = {k: v for k, v in sora.items() if k != "pricing"}
    settings = settings_for(
        tmp_path, simulator, budget={"daily_usd": 2.0, "unknown_price": unknown_price}
    )
    drop_job(tmp_path / "inbox", "mystery.txt", "what does it cost")
    if unknown_price == "allow":
        await run_daemon(settings)
        assert simulator.count("enqueue") == 1
        manifest = json.loads((tmp_path / "outbox" / "mystery.result.json").read_text())
        assert manifest["cost_usd"] is None
        return
    # Held, it waits for the budget to change: `run --until-idle` stops meanwhile.
    await run_daemon(settings, until_idle=True)
    assert simulator.count("enqueue") == 0
    assert job_error(settings.database_path, "mystery") == (
        'budget: its price is unknown and budget.unknown_price = "hold"; it goes ahead once '
        "that setting changes"
    )


@pytest.mark.e2e
def test_the_real_daemon_holds_a_job_over_the_cap_until_sighup_raises_it(
    tmp_path: Path, simulator: Simulator
) -> None:
    config = write_config(tmp_path, simulator, budget={"daily_usd": 3.0})
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    database = tmp_path / "state" / "dropreel.sqlite3"
    log = tmp_path / "daemon.log"
    with log.open("w") as output:
        process = start_daemon(config, output)
    try:
        wait_for(lambda: simulator.streams_open == 1, 30, "the daemon's event stream")
        drop_job(inbox, "first.json", json.dumps({"prompt": "first", "seconds": "4"}))
        wait_for(lambda: (outbox / "first.result.json").exists(), 30, "the first job")
        drop_job(inbox, "second.json", json.dumps({"prompt": "second", "seconds": "8"}))
        wait_for(lambda: job_error(database, "second") is not None, 30, "the hold")
        status = dropreel("status", "--config", str(config))
        assert re.search(
            r"held .* second +budget: \$1\.20 spent or reserved today \+ \$2\.40", status.stdout
        ), status.stdout
        assert "of the $3.00 daily cap" in status.stdout
        spend = dropreel("spend", "--config", str(config))
        assert re.search(r"oxen +openai-sora-2-pro +1 +\$1\.20 \(estimate\)", spend.stdout), (
            spend.stdout
        )

        # A config that does not load changes nothing: one line says so, the job stays held.
        config.write_text(config.read_text().replace("daily_usd = 3.0", "daily_usd = -5"))
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: "config not reloaded" in log.read_text(), 10, "the refusal")
        time.sleep(0.5)
        assert simulator.count("enqueue") == 1, "never a POST over the cap"
        assert process.poll() is None

        write_config(tmp_path, simulator, budget={"daily_usd": 10.0})
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: (outbox / "second.result.json").exists(), 30, "the released job")
        assert simulator.count("enqueue") == 2
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    text = log.read_text()
    assert "budget.daily_usd: -5 is not allowed" in text
    assert "config reloaded" in text and "Traceback" not in text
    assert json.loads((outbox / "second.result.json").read_text())["cost_usd"] == 2.4


async def test_a_price_that_cannot_be_had_leaves_the_job_of_unknown_cost(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.options.fail_next["model"] = [(500, {})]
    settings = settings_for(tmp_path, simulator)
    for name in ("one", "two"):
        drop_job(tmp_path / "inbox", f"{name}.json", json.dumps({"prompt": name, "seconds": "8"}))
    with capture_logs() as logs:
        await run_daemon(settings)
    assert simulator.count("enqueue") == 2
    assert simulator.count("model") == 1, "a failed look-up is not repeated for every job"
    for name in ("one", "two"):
        manifest = json.loads((tmp_path / "outbox" / f"{name}.result.json").read_text())
        assert manifest["cost_usd"] is None
    [warning] = [
        e for e in logs if e["event"].startswith("cannot learn the model's schema and price")
    ]
    assert warning["model"] == "openai-sora-2-pro"
    assert "HTTP 500" in warning["error"]


class LostAfterCreating:
    """The real provider, except that its first POST's answer is lost once it has made the
    video, and the budget is changed (as a SIGHUP would) at that very moment."""

    def __init__(self, provider: Any, meanwhile: Callable[[], object]) -> None:
        self._provider = provider
        self._meanwhile = meanwhile
        self._lost = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._provider, name)

    async def enqueue(self, body: Mapping[str, Any], **options: Any) -> list[RemoteGeneration]:
        made = await self._provider.enqueue(body, **options)
        if self._lost:
            return list(made)
        self._lost = True
        self._meanwhile()
        raise AmbiguousAnswer("POST /videos", 502, "gateway answered after the create")


async def test_a_post_that_may_have_made_a_video_is_replayed_whatever_the_budget(
    tmp_path: Path, simulator: Simulator
) -> None:
    lumenfall: dict[str, Any] = {
        "kind": "openai-videos",
        "base_url": simulator.base_url + "/v1",
        "default_model": "sora-2-pro",
        "poll_interval_s": 0.2,
    }
    allow = {"daily_usd": 5.0, "unknown_price": "allow"}
    settings = settings_for(
        tmp_path,
        simulator,
        **{"providers.lumenfall": lumenfall, "jobs": {"provider": "lumenfall"}},
        budget=allow,
    )
    # Lumenfall publishes no price: from now on such jobs are held...
    holding = settings.model_copy(
        update={"budget": BudgetSettings(daily_usd=5.0, unknown_price="hold")}
    )
    running: list[Daemon] = []

    def wrap(provider: Any) -> Any:
        return LostAfterCreating(provider, lambda: running[0].reload(holding))

    drop_job(tmp_path / "inbox", "paid.json", json.dumps({"prompt": "made once", "seconds": "4"}))
    async with assembled_daemon(settings, KEY, environ={}, provider_wrapper=wrap) as daemon:
        running.append(daemon)
        with anyio.fail_after(30):
            await daemon.run(anyio.Event(), until_idle=True)
    # ...but this one's video may exist and be billed: it is replayed with its key, not held.
    assert len(simulator.videos.created) == 1
    assert (tmp_path / "outbox" / "paid.result.json").exists()
