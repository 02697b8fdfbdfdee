"""The daemon under a stand-in for systemd: a real notify socket, a real SIGTERM."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dropreel.install.unit import unit_text
from dropreel_simulator.oxen import Simulator

from .daemon_harness import drop_job, write_config
from .test_e2e import daemon_env, start_daemon, wait_for

pytestmark = pytest.mark.e2e

UNIT = Path(__file__).parent.parent / "systemd" / "dropreel.service"


def collect(sock: socket.socket, until: str, timeout_s: float = 30) -> list[list[str]]:
    """Datagrams until one with a line containing `until` arrives."""
    messages: list[list[str]] = []
    deadline = time.monotonic() + timeout_s
    while not any(until in line for m in messages for line in m):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        messages.append(sock.recv(4096).decode().split("\n"))
    return messages


def test_ready_status_watchdog_and_stopping_reach_systemd(
    tmp_path: Path, simulator: Simulator
) -> None:
    log = tmp_path / "hook.log"
    # A hook slower than the stop: SIGTERM must let it finish.
    slow_hook = (
        "import sys, time; open(sys.argv[1], 'a').write('start\\n'); time.sleep(1.5); "
        "open(sys.argv[1], 'a').write('done\\n')"
    )
    config = write_config(
        tmp_path,
        simulator,
        hooks={"on_complete": [sys.executable, "-c", slow_hook, str(log)]},
        service={"heartbeat_s": 0.2, "shutdown_grace_s": 30},
    )
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        env = daemon_env(NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000")
        process = start_daemon(config, subprocess.PIPE, env)
        try:
            ready = collect(sock, "READY=1")[-1]
            assert simulator.count("events") == 1, "READY only after the stream was attempted"
            assert "STATUS=stream up; 0 waiting; 0 downloading; 0 failed" in ready, ready
            drop_job(tmp_path / "inbox", "clip.txt", "p")
            running = collect(sock, "1 hooks pending")
            wait_for(lambda: log.exists() and "start" in log.read_text(), 30, "the hook")
            process.send_signal(signal.SIGTERM)
            after = running + collect(sock, "STOPPING=1")
            output, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0
    assert ["WATCHDOG=1"] in after, "fed while running"
    assert any(
        line.startswith("STATUS=") and "1 hooks pending" in line
        for message in after
        for line in message
    ), after
    stopping = next(m for m in after if "STOPPING=1" in m)
    assert "STATUS=stopping: 1 downloads/hooks finishing" in stopping
    assert log.read_text().split() == ["start", "done"], "the running hook was let finish"
    stopped = json.loads(output.splitlines()[-1])
    assert stopped["event"] == "stopped" and stopped["hooks_run"] == 1


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_unit_verifies(tmp_path: Path) -> None:
    # verify checks that ExecStart's binary exists; point it at one that does.
    unit = tmp_path / "dropreel.service"
    program = Path(shutil.which("true") or "/bin/true")
    unit.write_text(unit_text(UNIT.read_text(), program, Path("/etc/dropreel/config.toml")))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    problems = [line for line in result.stderr.splitlines() if str(unit) in line]
    assert result.returncode == 0 and not problems, result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_unit_is_hardened_to_ok_or_better() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
    )
    summary = result.stdout.strip().splitlines()[-1]
    # e.g. "→ Overall exposure level for dropreel.service: 1.9 OK 🙂"
    exposure = float(summary.split(":")[1].split()[0])
    assert exposure <= 2.0, result.stdout
