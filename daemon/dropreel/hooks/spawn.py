"""Starting a hook and waiting for it without a helper thread.

posix_spawn starts it in a session of its own (so a time-out can kill its whole process
group); a pidfd tells the event loop when it has ended, where asyncio's child watcher would
park a thread per hook. Its stdin gets the payload through a pipe; its stdout and stderr come
back through another, keeping only a tail.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import anyio

_OUTPUT_TAIL_BYTES = 4096
# A hook's background child may hold its stdout open: after the hook ends, wait this long.
_OUTPUT_GRACE_S = 1.0


@dataclass(frozen=True, slots=True)
class Ended:
    """How a hook ended: its exit code, or None if it was killed at its time-out."""

    returncode: int | None
    output: bytes


def resolve(program: str, env: Mapping[str, str]) -> str:
    """The program's path, looked up on the hook's own PATH as a shell would."""
    if "/" in program:
        return program
    found = shutil.which(program, path=env.get("PATH", os.defpath))
    if found is None:
        raise FileNotFoundError(2, "not found on PATH", program)
    return found


async def spawn_and_wait(
    argv: Sequence[str], env: Mapping[str, str], stdin: bytes, *, timeout_s: float
) -> Ended:
    """Run `argv` to its end or its time-out (then its process group is killed).

    Raises OSError if it cannot be started.
    """
    path = resolve(argv[0], env)
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    try:
        # vfork and exec: returns at once, never waits on the child.
        pid = os.posix_spawn(  # noqa: ASYNC221
            path,
            list(argv),
            dict(env),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, in_read, 0),
                (os.POSIX_SPAWN_DUP2, out_write, 1),
                (os.POSIX_SPAWN_DUP2, out_write, 2),
            ],
            setsid=True,
        )
    except BaseException:
        for fd in (in_read, in_write, out_read, out_write):
            os.close(fd)
        raise
    os.close(in_read)
    os.close(out_write)
    pidfd = os.pidfd_open(pid)
    output = bytearray()
    try:
        _feed(in_write, stdin)
        os.set_blocking(out_read, False)
        returncode = await _wait(pid, pidfd, out_read, output, timeout_s)
    finally:
        os.close(pidfd)
        os.close(out_read)
    return Ended(returncode, bytes(output))


def _feed(fd: int, data: bytes) -> None:
    """Hand the payload over and close: it fits the pipe (bounded), and a hook that never
    reads its stdin must not hold us up."""
    try:
        os.set_blocking(fd, False)
        os.write(fd, data[:60_000])
    except (BrokenPipeError, BlockingIOError):
        pass
    finally:
        os.close(fd)


async def _wait(pid: int, pidfd: int, out: int, output: bytearray, timeout_s: float) -> int | None:
    ended = anyio.Event()
    status: list[int] = []

    async def reap() -> None:
        await anyio.wait_readable(pidfd)
        # The pidfd is readable: the child has ended, so this returns at once.
        status.append(os.waitpid(pid, 0)[1])  # noqa: ASYNC222
        ended.set()

    async def collect() -> None:
        while await _read_some(out, output):
            pass

    timed_out = False
    async with anyio.create_task_group() as group:
        group.start_soon(collect)
        with anyio.move_on_after(timeout_s) as deadline:
            await reap()
        if deadline.cancelled_caught:
            timed_out = True
            _kill_group(pid)
            with anyio.CancelScope(shield=True):
                await reap()
        group.cancel_scope.deadline = min(
            group.cancel_scope.deadline, anyio.current_time() + _OUTPUT_GRACE_S
        )
    return None if timed_out else os.waitstatus_to_exitcode(status[-1])


async def _read_some(fd: int, output: bytearray) -> bool:
    """Read what is there (waiting for it); False at the end of the output."""
    await anyio.wait_readable(fd)
    try:
        chunk = os.read(fd, 65536)
    except BlockingIOError:
        return True
    if not chunk:
        return False
    output.extend(chunk)
    del output[:-_OUTPUT_TAIL_BYTES]
    return True


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
