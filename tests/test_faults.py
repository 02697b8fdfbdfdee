"""The daemon against a hostile provider: each fault switched on in the real simulator."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from dropreel.lifecycle import JobState, Phase
from dropreel.state.store import Store
from dropreel_simulator.oxen import Simulator

from .daemon_harness import drop_job, hook_argv, hook_lines, run_daemon, settings_for, until


def drop(root: Path, name: str, text: str) -> None:
    drop_job(root / "inbox", name, text)


def served(simulator: Simulator, root: Path, name: str) -> bool:
    [generation_id] = simulator.generations
    expected = simulator.content_for(generation_id, simulator.options.result_bytes)
    return (root / "outbox" / name).read_bytes() == expected


async def test_a_stalled_stream_is_noticed_and_its_lost_events_reconciled(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.options.complete_after_s = (0.3, 0.3)
    settings = settings_for(
        tmp_path, simulator, events={"idle_timeout_s": 0.5}, poll={"interval_s": 600}
    )
    drop(tmp_path, "stalled.txt", "p")

    async def stall_until_done() -> None:
        await until(lambda: simulator.count("enqueue") == 1)
        simulator.options.stall_streams = True
        await until(lambda: all(g.status == "succeeded" for g in simulator.generations.values()))
        await until(lambda: simulator.count("events") >= 2)  # the stall was noticed
        simulator.options.stall_streams = False

    async with anyio.create_task_group() as group:
        group.start_soon(stall_until_done)
        await run_daemon(settings)
    assert served(simulator, tmp_path, "stalled.mp4")
    assert simulator.count("list") + simulator.count("get") >= 1


async def test_garbage_unrelated_and_duplicate_events_change_nothing(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.options.noisy_events = True
    log = tmp_path / "hooks.log"
    settings = settings_for(tmp_path, simulator, hooks={"on_complete": hook_argv(log)})
    drop(tmp_path, "noisy.json", json.dumps({"prompt": "p", "num_generations": 2}))
    await run_daemon(settings)
    assert sorted(p.name for p in (tmp_path / "outbox").iterdir()) == [
        "noisy-1.mp4",
        "noisy-2.mp4",
        "noisy.result.json",
    ]
    assert sorted(r["generation_id"] for r in hook_lines(log)) == sorted(simulator.generations)
    assert simulator.count("download") == 2


async def test_a_download_cut_half_way_resumes_where_it_stopped(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.options.cut_downloads = 1
    settings = settings_for(tmp_path, simulator)
    drop(tmp_path, "cut.txt", "p")
    await run_daemon(settings)
    assert served(simulator, tmp_path, "cut.mp4")
    assert simulator.count("download") == 2
    assert simulator.count("enqueue") == 1


async def test_an_expired_result_url_is_refreshed_over_rest(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.options.expired_event_urls = True
    settings = settings_for(tmp_path, simulator)
    drop(tmp_path, "expired.txt", "p")
    await run_daemon(settings)
    assert served(simulator, tmp_path, "expired.mp4")
    assert simulator.count("get") == 1
    assert simulator.count("download") == 2


async def test_a_refused_key_is_not_hammered_and_the_job_waits(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.options.api_key = "the-right-key"
    settings = settings_for(tmp_path, simulator, events={"reconnect_max_s": 1.0})
    drop(tmp_path, "waiting.txt", "p")
    stop = anyio.Event()

    async def watch_for_a_while() -> None:
        await anyio.sleep(2.5)
        stop.set()

    async with anyio.create_task_group() as group:
        group.start_soon(watch_for_a_while)
        await run_daemon(settings, until_idle=False, stop=stop)
    assert 1 <= simulator.count("events") <= 4
    assert 1 <= simulator.count("enqueue") <= 4
    async with Store.open(settings.database_path, read_only=True) as store:
        [job] = await store.jobs()
    assert job.state is JobState.ACCEPTED
    assert job.error is not None and "401" in job.error
    assert not simulator.generations


async def test_a_generation_past_the_deadline_is_cancelled_and_explained(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.options.complete_after_s = (60.0, 60.0)
    log = tmp_path / "hooks.log"
    settings = settings_for(
        tmp_path, simulator, jobs={"deadline_s": 1.0}, hooks={"on_complete": hook_argv(log)}
    )
    drop(tmp_path, "slow.txt", "p")
    await run_daemon(settings)
    [run] = hook_lines(log)
    assert run["status"] == "failed"
    assert "no result within the job deadline (1s)" in run["error"]
    assert "cancelled at the provider" in run["error"]
    assert simulator.count("cancel") == 1
    [generation] = simulator.generations.values()
    assert generation.status == "cancelled"


async def test_transient_status_errors_while_polling_are_survived(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.options.refuse_events_with = 503
    simulator.options.fail_next["list"] = [(500, {}), (429, {"Retry-After": "1"})]
    simulator.options.fail_next["get"] = [(502, {})]
    settings = settings_for(tmp_path, simulator, poll={"interval_s": 0.2})
    drop(tmp_path, "flaky.txt", "p")
    await run_daemon(settings)
    assert served(simulator, tmp_path, "flaky.mp4")


@contextmanager
def tiny_filesystem(path: Path, size: str) -> Iterator[None]:
    """A real tmpfs of the given size mounted at `path` (needs root: skipped elsewhere)."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


async def test_a_full_disk_fails_the_download_cleanly_and_it_is_retried(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.options.result_bytes = 64 * 1024
    outbox = tmp_path / "outbox"
    settings = settings_for(
        tmp_path, simulator, delivery={"retry_initial_s": 0.05, "retry_max_s": 0.2}
    )
    drop(tmp_path, "big.txt", "p")

    async def free_space_after_failures() -> None:
        await until(lambda: simulator.count("download") >= 3)
        await anyio.run_process(["mount", "-o", "remount,size=1m", str(outbox)])

    with tiny_filesystem(outbox, "32k"):
        async with anyio.create_task_group() as group:
            group.start_soon(free_space_after_failures)
            await run_daemon(settings)
        assert served(simulator, tmp_path, "big.mp4")
        assert sorted(p.name for p in outbox.iterdir()) == ["big.mp4", "big.result.json"]
    assert simulator.count("enqueue") == 1
    async with Store.open(settings.database_path, read_only=True) as store:
        [generation] = await store.all_generations()
        story = [row["detail"] or "" for row in await store.history(generation.job_id)]
    assert generation.download_attempts >= 2
    assert any("No space left on device" in line for line in story)


async def test_a_hanging_hook_never_holds_up_other_completions(
    tmp_path: Path, simulator: Simulator
) -> None:
    log = tmp_path / "hooks.log"
    script = (
        "import json, sys, time; payload = json.load(sys.stdin)\n"
        "open(sys.argv[1], 'a').write('start ' + payload['job_name'] + '\\n')\n"
        "if payload['job_name'] == 'hangs': time.sleep(600)\n"
        "open(sys.argv[1], 'a').write('done ' + payload['job_name'] + '\\n')\n"
    )
    settings = settings_for(
        tmp_path,
        simulator,
        hooks={"on_complete": [sys.executable, "-c", script, str(log)], "timeout_s": 300},
    )

    def logged() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    stop = anyio.Event()
    hanging_phase: list[Phase] = []

    async def second_job_while_the_first_hook_hangs() -> None:
        await until(lambda: "start hangs" in logged())
        drop(tmp_path, "quick.txt", "p")
        await until(lambda: "done quick" in logged())
        async with Store.open(settings.database_path, read_only=True) as store:
            for generation in await store.all_generations():
                job = await store.job(generation.job_id)
                if job is not None and job.stem == "hangs":
                    hanging_phase.append(generation.phase)
        stop.set()

    drop(tmp_path, "hangs.txt", "p")
    async with anyio.create_task_group() as group:
        group.start_soon(second_job_while_the_first_hook_hangs)
        await run_daemon(settings, until_idle=False, stop=stop)
    assert logged() == ["start hangs", "start quick", "done quick"]
    assert hanging_phase == [Phase.HOOKING], "the first hook was still running throughout"
    assert (tmp_path / "outbox" / "quick.result.json").exists()
