"""`status`, `show` and `watch` read the database of a daemon that has stopped, as a member
of its group who may not write the state folder."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dropreel_simulator.oxen import Simulator

from .daemon_harness import db_rows, drop_job, write_config
from .test_e2e import daemon_env, job_states, start_daemon, wait_for

pytestmark = pytest.mark.e2e

# The service's user owns the state folder; the reader is in its group and is not its owner:
# with root, root itself stripped of every capability (so the Python it runs stays
# reachable), the folder owned by nobody and the group root's.
SERVICE_UID = 65534


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A folder other users can enter (pytest's own temporary folders are private)."""
    root = Path(tempfile.mkdtemp(prefix="dropreel-reader-"))
    root.chmod(0o755)
    yield root
    for folder, _, _ in os.walk(root):
        Path(folder).chmod(0o755)
    shutil.rmtree(root)


def as_reader(*argv: str) -> subprocess.CompletedProcess[str]:
    """`argv` run by someone who may read the state folder but not write it."""
    if os.geteuid() == 0:
        argv = (
            "setpriv",
            "--bounding-set=-all",
            "--inh-caps=-all",
            "--securebits=+noroot,+noroot_locked",
            *argv,
        )
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env=daemon_env(), check=False
    )


def readable_not_writable(state: Path) -> None:
    """The service's modes (UMask=0027, StateDirectoryMode=0750), its group the reader's;
    without root, the files and folders themselves read-only."""
    for folder, _, files in os.walk(state):
        paths = [Path(folder), *(Path(folder) / name for name in files)]
        for path in paths:
            if os.geteuid() == 0:
                os.chown(path, SERVICE_UID, os.getgid())
                path.chmod(0o750 if path.is_dir() else 0o640)
            else:
                path.chmod(0o555 if path.is_dir() else 0o444)


def dropreel_argv(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "dropreel", *args)


def stop(process: subprocess.Popen[str], how: signal.Signals) -> None:
    process.send_signal(how)
    process.wait(timeout=30)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_status_and_show_read_a_stopped_daemons_database_without_writing(
    shared_root: Path, simulator: Simulator, how: signal.Signals
) -> None:
    config = write_config(shared_root, simulator)
    state = shared_root / "state"
    process = start_daemon(config, subprocess.DEVNULL)
    try:
        wait_for(lambda: simulator.streams_open == 1, 30, "the daemon's event stream")
        drop_job(shared_root / "inbox", "sunrise.txt", "A sunrise")
        wait_for(lambda: job_states(state / "dropreel.sqlite3") == ["completed"], 30, "the job")
        # Its hook's end is committed a moment later (it rides the next commit).
        wait_for(
            lambda: (
                db_rows(state / "dropreel.sqlite3", "SELECT phase FROM generations")[0][0] == "done"
            ),
            30,
            "the hook's end",
        )
    finally:
        stop(process, how)
    # A clean stop folds the write-ahead log into the database and removes it; a kill
    # leaves it for the next reader to read.
    assert (state / "dropreel.sqlite3-wal").exists() is (how is signal.SIGKILL)
    readable_not_writable(state)
    assert as_reader("touch", str(state / "probe")).returncode != 0, "the reader can write"

    status = as_reader(*dropreel_argv("status", "--json", "--config", str(config)))
    assert status.returncode == 0, status.stderr
    assert '"name": "sunrise"' in status.stdout
    job_id = status.stdout.split('"job_id": "')[1].split('"')[0]
    shown = as_reader(*dropreel_argv("show", job_id, "--config", str(config)))
    assert shown.returncode == 0, shown.stderr
    assert f"job {job_id}  completed" in shown.stdout
    watched = as_reader(*dropreel_argv("watch", "--config", str(config)))
    assert watched.returncode == 0, watched.stderr
    assert "\n  the daemon is not running\n" in watched.stdout
    assert re.search(r"\n  \w+  delivered  took \d+s +sunrise +1/1 delivered\n", watched.stdout)
    assert sorted(p.name for p in state.iterdir() if p.name.startswith("dropreel.sqlite3")) == (
        ["dropreel.sqlite3", "dropreel.sqlite3-shm", "dropreel.sqlite3-wal"]
        if how is signal.SIGKILL
        else ["dropreel.sqlite3"]
    ), "the reader created nothing"
