from __future__ import annotations

from collections.abc import Iterator

import pytest

from dropreel_simulator.oxen import Simulator, SimulatorOptions, running_simulator


@pytest.fixture(autouse=True)
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    """A fresh simulator on loopback, quick generations, small results."""
    # Keep-alives well inside the daemon's idle timeout, as in production (15 s vs 45 s).
    options = SimulatorOptions(
        complete_after_s=(0.05, 0.2), result_bytes=32 * 1024, keepalive_s=1.0, seed=1
    )
    with running_simulator(Simulator(options)) as sim:
        yield sim
