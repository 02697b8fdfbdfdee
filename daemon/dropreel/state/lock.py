"""One daemon per state folder: an OS lock held for the process's life.

flock(2) is released by the kernel when the process dies, however it dies, so a SIGKILL
never leaves a stale lock behind; the pid written into the file only names the holder.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from dropreel.errors import DropreelError

LOCK_NAME = "dropreel.lock"


class AlreadyRunning(DropreelError):
    """Another dropreel holds the state folder."""


def hold_state_lock(state_dir: Path) -> int:
    """Take the state folder's lock for this process's life; its descriptor.

    Raises AlreadyRunning naming the holder. The descriptor is not inherited by hooks.
    """
    path = state_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise AlreadyRunning(
            f"another dropreel{holder} is already running on the state folder {state_dir}; "
            "stop it first (one daemon per state folder)"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _holder(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return f" (pid {text})" if text.isdigit() else ""


def lock_holder(state_dir: Path) -> str | None:
    """Who holds the state folder's lock now ("pid 12"), or None if nobody does; OSError if
    the lock cannot be looked at. Needs only read access to the lock file."""
    fd = os.open(state_dir / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        try:
            # Held for no longer than this call: a daemon starting in that instant would be
            # refused, and its service manager starts it again.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(fd).strip(" ()") or "a process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
