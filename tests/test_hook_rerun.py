"""Hooks that gave up are made due again once, picked up once, and never run twice at once."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from dropreel.app import assembled_daemon
from dropreel.lifecycle import Phase
from dropreel.state.store import Store
from dropreel_simulator.oxen import Simulator

from .daemon_harness import KEY, drop_job, run_daemon, settings_for

# Notes its start and its end: two runs at once would interleave.
SLOW_HOOK = (
    "import sys, time; log = open(sys.argv[1], 'a'); log.write('start\\n'); log.flush(); "
    "time.sleep(0.3); log.write('end\\n')"
)


async def a_hook_that_gave_up(tmp_path: Path, simulator: Simulator) -> str:
    settings = settings_for(
        tmp_path, simulator, hooks={"on_complete": ["/bin/false"], "max_attempts": 1}
    )
    drop_job(settings.inbox_dir, "cat.txt", "a cat")
    await run_daemon(settings)
    async with Store.open(settings.database_path, read_only=True) as store:
        [generation] = await store.all_generations()
    assert generation.phase is Phase.DONE and generation.hook_error
    return generation.generation_id


async def test_a_hook_is_made_due_again_once_and_handed_to_the_daemon_once(
    tmp_path: Path, simulator: Simulator
) -> None:
    generation_id = await a_hook_that_gave_up(tmp_path, simulator)
    async with Store.open(tmp_path / "state" / "dropreel.sqlite3") as store:
        assert await store.want_hooks_again([generation_id, "unknown"], by_daemon=True) == [
            generation_id
        ]
        assert await store.want_hooks_again([generation_id], by_daemon=True) == []
        assert await store.take_hook_reruns() == [generation_id]
        assert await store.take_hook_reruns() == []
        generation = await store.generation(generation_id)
    assert generation is not None and generation.phase is Phase.HOOKING


async def test_a_hook_queued_several_times_runs_once_at_a_time(
    tmp_path: Path, simulator: Simulator
) -> None:
    generation_id = await a_hook_that_gave_up(tmp_path, simulator)
    log = tmp_path / "hook.log"
    settings = settings_for(
        tmp_path, simulator, hooks={"on_complete": [sys.executable, "-c", SLOW_HOOK, str(log)]}
    )
    async with Store.open(settings.database_path) as store:
        await store.want_hooks_again([generation_id], by_daemon=False)
    async with assembled_daemon(settings, KEY, environ={}) as daemon:
        # With the one the restart queues, three workers get it at once.
        await daemon.completion.hooks.put(generation_id)
        await daemon.completion.hooks.put(generation_id)
        with anyio.fail_after(30):
            await daemon.run(anyio.Event(), until_idle=True)
    assert log.read_text().splitlines() == ["start", "end"]
