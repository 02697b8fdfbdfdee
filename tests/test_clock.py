from __future__ import annotations

from dropreel.clock import ElapsedClock


class Clocks:
    """A wall clock and a monotonic clock a test moves by hand."""

    def __init__(self, wall: float) -> None:
        self.wall_now = wall
        self.monotonic_now = 1_000.0

    def wall(self) -> float:
        return self.wall_now

    def monotonic(self) -> float:
        return self.monotonic_now

    def clock(self) -> ElapsedClock:
        return ElapsedClock(wall=self.wall, monotonic=self.monotonic)


def test_time_before_the_process_started_is_counted_on_the_wall_clock() -> None:
    clocks = Clocks(wall=10_000.0)
    clock = clocks.clock()
    assert clock.elapsed_since(9_000.0) == 1_000.0
    assert clock.remaining(9_000.0, 1_500.0) == 500.0


def test_time_that_passes_while_running_is_counted_on_the_monotonic_clock() -> None:
    clocks = Clocks(wall=10_000.0)
    clock = clocks.clock()
    clocks.monotonic_now += 30.0
    clocks.wall_now += 30.0
    assert clock.elapsed_since(10_000.0) == 30.0


def test_a_wall_clock_jump_while_running_changes_nothing() -> None:
    clocks = Clocks(wall=10_000.0)
    clock = clocks.clock()
    clocks.wall_now += 2 * 86_400  # the clock is set two days forward
    clocks.monotonic_now += 1.0
    assert clock.elapsed_since(10_000.0) == 1.0
    clocks.wall_now -= 5 * 86_400  # and then far back
    assert clock.remaining(10_000.0, 60.0) == 59.0
