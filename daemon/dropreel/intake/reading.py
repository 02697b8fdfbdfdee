"""Reading a file from the inbox safely: only a small regular file, never followed through a
link, and never while its writer is still at work."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from dropreel.errors import JobFileRejected
from dropreel.fs.moves import FILE_KINDS
from dropreel.intake.jobs import MAX_JOB_FILE_BYTES
from dropreel.intake.writers import open_for_writing


class NotYet(Exception):
    """The file is still settling (recently written); look again later."""


class Vanished(Exception):
    """The file went away before we could take it."""


def read_job_file(
    path: Path,
    *,
    settle_s: float,
    now: float,
    unchanged_long_enough: Callable[[os.stat_result], bool] = lambda _: True,
    max_bytes: int = MAX_JOB_FILE_BYTES,
) -> bytes:
    """A job file's bytes (or an image's); refuses anything that is not a small regular file.

    A file another process still has open for writing is left for later; where that cannot
    be asked, `unchanged_long_enough` decides.
    """
    name = path.name
    _check_entry(path, settle_s=settle_s, now=now, max_bytes=max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Vanished from None
    except OSError as exc:
        raise JobFileRejected(name, f"cannot read: {exc.strerror}") from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise JobFileRejected(name, "not a regular file")
        writing = open_for_writing(fd)
        if writing or (writing is None and not unchanged_long_enough(opened)):
            raise NotYet
        chunks: list[bytes] = []
        remaining = max_bytes + 1
        while remaining > 0 and (chunk := os.read(fd, min(remaining, 1 << 16))):
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise JobFileRejected(name, f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


def _check_entry(path: Path, *, settle_s: float, now: float, max_bytes: int) -> None:
    """Refuse what is not a small regular file; leave what was written too recently."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise Vanished from None
    kind = stat.S_IFMT(info.st_mode)
    if kind != stat.S_IFREG:
        raise JobFileRejected(path.name, f"not a regular file ({FILE_KINDS.get(kind, 'special')})")
    if info.st_size > max_bytes:
        raise JobFileRejected(path.name, f"file is {info.st_size} bytes; the limit is {max_bytes}")
    if now - info.st_mtime < settle_s:
        raise NotYet
