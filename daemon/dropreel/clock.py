"""Elapsed time that a jump of the wall clock cannot fake. Pure but for the two clocks read.

Deadlines are anchored to wall-clock stamps kept in the database (they must survive a
restart), but time that passes while this process runs is measured on the monotonic clock:
a clock set forward by a day must not make every generation look a day late.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ElapsedClock:
    """Seconds since a wall-clock stamp: wall time before this process began, monotonic after."""

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._anchor_wall = wall()
        self._anchor_monotonic = monotonic()

    def now(self) -> float:
        """The wall-clock time as this process measures it (start stamp + monotonic since)."""
        return self._anchor_wall + (self._monotonic() - self._anchor_monotonic)

    def elapsed_since(self, stamp: float) -> float:
        """Seconds since `stamp` (a wall-clock time), immune to wall-clock jumps while running."""
        return self.now() - stamp

    def remaining(self, stamp: float, budget_s: float) -> float:
        """Seconds left of `budget_s` counted from `stamp`; zero or less once it is spent."""
        return budget_s - self.elapsed_since(stamp)


# The daemon's clock: anchored when dropreel is imported, i.e. at process start.
process_clock = ElapsedClock()
