"""An inbox removed, or replaced by something that cannot be listed, while the daemon runs:
reported once, never a crash, and watched again once it is back."""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import structlog

from dropreel_simulator.oxen import Simulator

from .daemon_harness import drop_job, run_daemon, settings_for, until


async def test_an_inbox_that_goes_away_is_reported_once_and_watched_again_on_return(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = settings_for(tmp_path, simulator, inbox={"rescan_interval_s": 0.2})
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    stop = anyio.Event()

    async def break_and_mend_the_inbox() -> None:
        drop_job(inbox, "before.txt", "first")
        await until(lambda: (outbox / "before.result.json").exists())
        shutil.rmtree(inbox)
        inbox.write_text("a file where the folder was")  # cannot be listed, cannot be made
        await anyio.sleep(1.0)  # several rescans fail meanwhile
        inbox.unlink()  # gone: the daemon makes it again
        await until(inbox.is_dir)
        drop_job(inbox, "after.txt", "second")
        await until(lambda: (outbox / "after.result.json").exists())
        stop.set()

    with structlog.testing.capture_logs() as logs:
        async with anyio.create_task_group() as group:
            group.start_soon(break_and_mend_the_inbox)
            await run_daemon(settings, until_idle=False, stop=stop, timeout_s=60)
    events = [entry["event"] for entry in logs]
    assert events.count("the inbox cannot be read; trying again") == 1
    assert events.count("the inbox can be read again") == 1
    assert sorted(body["prompt"] for body, _ in simulator.enqueued) == ["first", "second"]
