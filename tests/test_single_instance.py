"""One daemon per state folder, with real processes and real signals."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dropreel_simulator.oxen import Simulator

from .daemon_harness import write_config
from .test_e2e import dropreel, start_daemon, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def config(tmp_path: Path, simulator: Simulator) -> Path:
    return write_config(tmp_path, simulator)


@contextmanager
def started(config: Path, log: Path) -> Iterator[subprocess.Popen[str]]:
    """`dropreel run` as a subprocess, once it says it is ready."""
    with log.open("w") as output:
        process = start_daemon(config, output)
    try:
        wait_for(lambda: "ready" in log.read_text(), 30, "the daemon to be ready")
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_a_second_daemon_on_the_same_state_folder_refuses_in_one_line(
    tmp_path: Path, config: Path
) -> None:
    with started(config, tmp_path / "first.log") as first:
        second = dropreel("run", "--config", str(config), timeout=30)
        assert second.returncode == 1
        [line] = second.stderr.strip().splitlines()
        assert f"another dropreel (pid {first.pid}) is already running" in line
        assert str(tmp_path / "state") in line
        assert first.poll() is None, "the running daemon is left alone"


def test_a_sigkilled_daemon_leaves_no_stale_lock(tmp_path: Path, config: Path) -> None:
    with started(config, tmp_path / "first.log") as first:
        first.send_signal(signal.SIGKILL)
        first.wait()
    with started(config, tmp_path / "second.log") as second:
        assert second.poll() is None
