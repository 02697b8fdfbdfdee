"""Stopping the daemon while it is still starting: a hung provider must not hold it up."""

from __future__ import annotations

import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .daemon_harness import write_config
from .test_e2e import start_daemon

pytestmark = pytest.mark.e2e


@dataclass
class Address:
    base_url: str


def test_sigterm_while_the_first_stream_attempt_hangs_stops_at_once(tmp_path: Path) -> None:
    # A server that completes the TCP handshake (the kernel does, from the backlog) and never
    # answers: the stream's first attempt hangs until its read time-out.
    with socket.create_server(("127.0.0.1", 0), backlog=16) as silent:
        port = silent.getsockname()[1]
        config = write_config(
            tmp_path,
            Address(f"http://127.0.0.1:{port}"),  # type: ignore[arg-type]
            events={"idle_timeout_s": 120.0},
            oxen={"connect_timeout_s": 120.0, "read_timeout_s": 120.0},
        )
        with (tmp_path / "daemon.log").open("w") as output:
            daemon = start_daemon(config, output)
            try:
                time.sleep(2.0)  # started, and stuck in the first attempt
                assert daemon.poll() is None
                daemon.send_signal(signal.SIGTERM)
                assert daemon.wait(timeout=20) == 0
            finally:
                if daemon.poll() is None:
                    daemon.kill()
                    daemon.wait()
    assert "stopped" in (tmp_path / "daemon.log").read_text()
