"""`dropreel retry` resubmits a job once: sequentially, racing, and after a crash half-way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from dropreel.config import Settings
from dropreel.lifecycle import JobState
from dropreel.state.store import Store
from dropreel_simulator.oxen import Simulator

from .daemon_harness import drop_job, run_daemon, settings_for
from .test_assets import PNG
from .test_service import stranded_post

pytestmark = pytest.mark.e2e


def retry_command(settings: Settings, job: str = "stranded") -> list[str]:
    return [
        sys.executable,
        "-m",
        "dropreel",
        "retry",
        job,
        "--config",
        str(settings.config_file),
    ]


def retry(settings: Settings, job: str = "stranded") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        retry_command(settings, job), capture_output=True, text=True, timeout=60, check=False
    )


async def parked(tmp_path: Path, simulator: Simulator) -> Settings:
    settings = settings_for(tmp_path, simulator)
    await stranded_post(settings, {"prompt": "never arrived", "model": "openai-sora-2-pro"})
    await run_daemon(settings)
    async with Store.open(settings.database_path, read_only=True) as store:
        job = await store.job("stranded")
    assert job is not None and job.state is JobState.NEEDS_ATTENTION
    return settings


def inbox_files(settings: Settings) -> list[str]:
    return sorted(p.name for p in settings.inbox_dir.iterdir())


async def test_a_job_is_retried_once_and_a_second_retry_names_the_job_it_became(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = await parked(tmp_path, simulator)
    first = retry(settings)
    assert first.returncode == 0, first.stderr
    assert inbox_files(settings) == ["stranded.json"]

    again = retry(settings)
    assert again.returncode == 1
    assert again.stderr.strip() == (
        "dropreel: job stranded was already retried: it became a file the daemon has not "
        f"taken yet, from {settings.inbox_dir / 'stranded.json'}"
    )
    assert inbox_files(settings) == ["stranded.json"]

    await run_daemon(settings)
    assert simulator.count("enqueue") == 1
    async with Store.open(settings.database_path, read_only=True) as store:
        [new] = [j for j in await store.jobs() if j.job_id != "stranded"]
    third = retry(settings)
    assert third.returncode == 1
    assert f"it became job {new.job_id} (completed)" in third.stderr
    await run_daemon(settings)
    assert simulator.count("enqueue") == 1, "never posted again"


async def test_racing_retries_resubmit_exactly_once(tmp_path: Path, simulator: Simulator) -> None:
    settings = await parked(tmp_path, simulator)
    racers = [
        await anyio.open_process(
            retry_command(settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(5)
    ]
    with anyio.fail_after(60):
        codes = sorted([await p.wait() for p in racers])
    assert codes == [0, 1, 1, 1, 1]
    assert inbox_files(settings) == ["stranded.json"], "one copy, no stray temporaries"
    await run_daemon(settings)
    assert simulator.count("enqueue") == 1


async def test_a_retry_cut_short_after_it_was_recorded_is_finished_by_the_next(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = await parked(tmp_path, simulator)
    # The state a crash between recording the retry and placing its copy leaves.
    staged = settings.inbox_dir / ".dropreel-retry-stranded-x1y2.tmp"
    staged.parent.mkdir(exist_ok=True)
    staged.write_text('{"prompt": "never arrived"}')
    async with Store.open(settings.database_path) as store:
        assert await store.mark_retried("stranded", str(settings.inbox_dir / "stranded.json"))
    finished = retry(settings)
    assert finished.returncode == 0, finished.stderr
    assert inbox_files(settings) == ["stranded.json"]
    assert retry(settings).returncode == 1


async def test_a_retried_job_gets_its_image_back_in_the_inbox(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = settings_for(tmp_path, simulator)
    inbox = settings.inbox_dir
    inbox.mkdir(parents=True)
    (inbox / "cat.png").write_bytes(PNG)
    drop_job(
        inbox, "cat.json", json.dumps({"model": "bad-model", "dropreel": {"image": "cat.png"}})
    )
    await run_daemon(settings)
    async with Store.open(settings.database_path, read_only=True) as store:
        [job] = await store.jobs()
    assert job.state is JobState.FAILED and inbox_files(settings) == []

    retried = retry(settings, job.job_id)

    assert retried.returncode == 0, retried.stderr
    assert inbox_files(settings) == ["cat.json", "cat.png"]
    assert (inbox / "cat.png").read_bytes() == PNG
