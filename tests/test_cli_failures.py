"""Every failure an operator can cause prints one line naming the thing and the fix; nothing
prints a traceback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from dropreel.state.store import Store
from dropreel_simulator.oxen import Simulator, SimulatorOptions, running_simulator

from .daemon_harness import write_config
from .test_e2e import daemon_env, dropreel, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with running_simulator(Simulator(SimulatorOptions())) as sim:
        yield sim


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr.strip()


def test_a_hook_that_cannot_start_stops_run_and_fails_check_config(
    tmp_path: Path, simulator: Simulator
) -> None:
    (tmp_path / "notify.sh").write_text("#!/bin/sh\n")  # not executable
    config = write_config(tmp_path, simulator, hooks={"on_complete": ["./notify.sh"]})
    run = dropreel("run", "--config", str(config))
    assert run.returncode == 2
    assert one_line(run) == (
        f"dropreel: config error: hooks.on_complete: {tmp_path / 'notify.sh'} is not "
        "executable (chmod +x it)"
    )
    checked = dropreel("check-config", "--config", str(config))
    assert checked.returncode == 1
    assert f"FAIL  hooks.on_complete: {tmp_path / 'notify.sh'} is not executable" in (
        checked.stdout
    )


def test_a_metrics_port_in_use_stops_run_with_one_line(
    tmp_path: Path, simulator: Simulator
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, simulator, metrics={"port": port})
        run = dropreel("run", "--config", str(config))
    assert run.returncode == 2
    assert one_line(run).startswith(
        f"dropreel: config error: metrics.port: cannot listen on 127.0.0.1:{port}: "
    )
    assert "choose another port, or 0 to serve no metrics" in run.stderr


def test_a_log_level_that_is_not_one_names_the_ones_that_are(tmp_path: Path) -> None:
    config = tmp_path / "dropreel.toml"
    config.write_text('[log]\nlevel = "loud"\n')
    result = dropreel("status", "--config", str(config))
    assert result.returncode == 2
    assert one_line(result) == (
        "dropreel: config error: log.level: 'loud' is not allowed: Input should be 'debug', "
        "'info', 'warning', 'error' or 'critical'"
    )


def seed_rejected_jobs(database: Path, count: int) -> None:
    async def seed() -> None:
        async with Store.open(database) as store:
            for n in range(count):
                await store.record_rejected(
                    job_id=f"job-{n:05}",
                    source_name=f"file-{n}.json",
                    source_path=f"/in/file-{n}.json",
                    kept_path=f"/failed/file-{n}.json",
                    stem=f"file-{n}",
                    reason="not valid JSON " * 4,
                )

    anyio.run(seed)


def test_status_piped_into_head_stops_quietly(tmp_path: Path) -> None:
    config = tmp_path / "dropreel.toml"
    config.write_text('[paths]\nstate = "state#1?x"\n')
    seed_rejected_jobs(tmp_path / "state#1?x" / "dropreel.sqlite3", 2000)
    status = subprocess.Popen(
        [sys.executable, "-m", "dropreel", "status", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=daemon_env(),
    )
    with status:
        assert status.stdout is not None and status.stderr is not None
        assert status.stdout.readline().startswith(b"ID ")
        status.stdout.close()  # what `| head -1` does once it has its line
        assert status.wait(timeout=60) == 141
        assert status.stderr.read() == b""


def text_of(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux for a real terminal")
def test_ctrl_c_on_simulate_stops_it_without_a_traceback(tmp_path: Path) -> None:
    output = tmp_path / "simulate.out"
    session = f"dropreel-test-{time.monotonic_ns()}"
    command = (
        f"{sys.executable} -m dropreel simulate --port 0 > {output} 2>&1; "
        f"echo EXIT=$? >> {output}; sleep 10"
    )
    subprocess.run(["tmux", "new-session", "-d", "-s", session, command], check=True)
    try:
        wait_for(lambda: "Ctrl-C stops it" in text_of(output), 30, "the simulator")
        subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True)
        wait_for(lambda: "EXIT=" in text_of(output), 30, "the simulator to stop")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    text = output.read_text()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert text.splitlines()[-1] == "EXIT=130"
