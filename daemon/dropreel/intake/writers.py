"""Whether a job file is still being written: ask the kernel where it can tell, else watch
the file stay unchanged for a while (network filesystems).

A writer with no temporary-name convention (`cat > inbox/x.txt`, scp, an editor) may pause
between writes for seconds; a file's age says nothing about that. A Linux read lease
(fcntl(2) F_SETLEASE) cannot be granted while any process has the file open for writing,
which is exactly the question.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
from dataclasses import dataclass

# fcntl(2): F_SETSIG, not exported by Python's fcntl module.
_F_SETSIG = 10
# A lease break is announced with a signal; SIGWINCH's default action is to ignore it, so a
# writer opening the file in the instant we hold the lease can never kill the daemon.
_BREAK_SIGNAL = signal.SIGWINCH
_STILL_WRITTEN = (errno.EAGAIN, errno.EBUSY)


def open_for_writing(fd: int) -> bool | None:
    """Whether any process has this file open for writing; None if the kernel will not say
    (no lease support on this filesystem, or neither owner nor CAP_LEASE)."""
    try:
        fcntl.fcntl(fd, _F_SETSIG, _BREAK_SIGNAL)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        return True if exc.errno in _STILL_WRITTEN else None
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    return False


@dataclass(frozen=True, slots=True)
class _Seen:
    size: int
    mtime_ns: int
    since: float


class StabilityWatch:
    """Where the kernel cannot tell, a file is settled once its size and modification time
    have not changed for `stable_s`. No I/O: callers pass what they saw and when."""

    def __init__(self, stable_s: float) -> None:
        self._stable_s = stable_s
        self._seen: dict[str, _Seen] = {}

    def settled(self, name: str, info: os.stat_result, now: float) -> bool:
        seen = self._seen.get(name)
        if seen is None or (seen.size, seen.mtime_ns) != (info.st_size, info.st_mtime_ns):
            self._seen[name] = _Seen(info.st_size, info.st_mtime_ns, now)
            return self._stable_s <= 0
        return now - seen.since >= self._stable_s

    def forget(self, name: str) -> None:
        self._seen.pop(name, None)
