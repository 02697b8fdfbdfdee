"""Hooks are started and waited for on the event loop: no thread per hook, a time-out kills
the whole process group, a background child cannot hold the daemon up."""

from __future__ import annotations

import threading
import time

import anyio

from dropreel.hooks.spawn import spawn_and_wait

ENV = {"PATH": "/usr/bin:/bin"}


async def test_many_hooks_at_once_start_no_thread() -> None:
    before = threading.active_count()
    peak = before

    async def one() -> None:
        ended = await spawn_and_wait(["sleep", "0.3"], ENV, b"", timeout_s=10)
        assert ended.returncode == 0

    async def watch() -> None:
        nonlocal peak
        for _ in range(20):
            peak = max(peak, threading.active_count())
            await anyio.sleep(0.02)

    async with anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(one)
        group.start_soon(watch)
    assert peak == before


async def test_the_payload_arrives_on_stdin_and_the_output_comes_back() -> None:
    ended = await spawn_and_wait(
        ["sh", "-c", "cat; echo done >&2; exit 3"], ENV, b'{"job_id": "j1"}\n', timeout_s=10
    )
    assert ended.returncode == 3
    assert ended.output == b'{"job_id": "j1"}\ndone\n'


async def test_a_time_out_kills_the_hook_and_its_children() -> None:
    started = time.monotonic()
    ended = await spawn_and_wait(["sh", "-c", "sleep 30 & sleep 30"], ENV, b"", timeout_s=0.3)
    assert ended.returncode is None
    assert time.monotonic() - started < 5


async def test_a_background_child_holding_the_output_open_does_not_hold_us() -> None:
    started = time.monotonic()
    ended = await spawn_and_wait(["sh", "-c", "sleep 30 & echo hi"], ENV, b"", timeout_s=60)
    assert ended.returncode == 0 and ended.output.startswith(b"hi")
    assert time.monotonic() - started < 5


async def test_a_hook_that_never_reads_a_large_stdin_is_not_waited_for() -> None:
    ended = await spawn_and_wait(["true"], ENV, b"x" * 200_000, timeout_s=10)
    assert ended.returncode == 0


async def test_a_bare_name_is_found_on_the_hooks_own_path() -> None:
    missing = {"PATH": "/nonexistent"}
    try:
        await spawn_and_wait(["true"], missing, b"", timeout_s=10)
    except FileNotFoundError as exc:
        assert exc.filename == "true"
    else:
        raise AssertionError("a program not on the hook's PATH must not start")
