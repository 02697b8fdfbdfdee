from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from dropreel.ops.notify import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A real datagram socket where systemd would listen."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_each_message_arrives_as_one_datagram(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    notifier.ready("stream up; 0 waiting")
    notifier.status("stream up; 0 waiting")  # unchanged: not sent again
    notifier.status("stream down, polling; 2 waiting")
    notifier.watchdog()
    notifier.stopping("stopping")
    notifier.close()
    assert received(sock) == ["READY=1", "STATUS=stream up; 0 waiting"]
    assert received(sock) == ["STATUS=stream down, polling; 2 waiting"]
    assert received(sock) == ["WATCHDOG=1"]
    assert received(sock) == ["STOPPING=1", "STATUS=stopping"]


def test_an_abstract_socket_is_reached_too() -> None:
    name = f"dropreel-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        notifier.ready("ok")
        notifier.close()
        assert received(sock) == ["READY=1", "STATUS=ok"]


def test_without_systemd_nothing_is_sent_and_nothing_fails() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    notifier.ready("x")
    notifier.watchdog()
    assert notifier.watchdog_interval_s is None


def test_a_vanished_socket_is_not_an_error(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    notifier.ready("x")
    notifier.close()


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_the_watchdog_is_fed_twice_per_period_when_asked(
    environ: dict[str, str], interval: float | None
) -> None:
    assert Notifier(environ).watchdog_interval_s == interval


def test_a_receiver_that_stops_reading_never_blocks_the_daemon(
    listener: tuple[str, socket.socket],
) -> None:
    path, _ = listener  # bound, never read: its queue fills after a few datagrams
    notifier = Notifier({"NOTIFY_SOCKET": path})
    for n in range(1000):
        notifier.status(f"stream up; {n} waiting")
        notifier.watchdog()
    notifier.close()
