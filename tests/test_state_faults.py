"""A state database that cannot be used stops dropreel with one line, loses nothing, and the
next start carries on once the fault is gone."""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from dropreel.cli.main import explained_failure
from dropreel.errors import StateError
from dropreel.state.records import SCHEMA_VERSION
from dropreel.state.store import Store
from dropreel_simulator.oxen import Simulator, SimulatorOptions, running_simulator

from .daemon_harness import drop_job, write_config
from .mounts import mounted, needs_root
from .test_e2e import dropreel, start_daemon, wait_for


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with running_simulator(Simulator(SimulatorOptions(complete_after_s=(0.1, 0.2)))) as sim:
        yield sim


async def test_a_file_that_is_not_a_database_is_named_with_the_fix(tmp_path: Path) -> None:
    database = tmp_path / "dropreel.sqlite3"
    database.write_bytes(b"not a database at all " * 300)
    with pytest.raises(StateError) as failed:
        async with Store.open(database):
            pass
    assert str(failed.value).startswith(f"state database {database}: is not a SQLite database")
    assert "move it aside" in str(failed.value)


async def test_a_database_from_a_newer_dropreel_is_refused_untouched(tmp_path: Path) -> None:
    database = tmp_path / "dropreel.sqlite3"
    with sqlite3.connect(database) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = database.read_bytes()
    for read_only in (False, True):
        with pytest.raises(StateError, match="written by a newer dropreel"):
            async with Store.open(database, read_only=read_only):
                pass
    assert database.read_bytes() == before


async def test_a_state_path_with_hash_and_question_mark_opens_read_only(tmp_path: Path) -> None:
    database = tmp_path / "odd#name?x" / "dropreel.sqlite3"
    async with Store.open(database):
        pass
    async with Store.open(database, read_only=True) as store:
        assert await store.job_ids() == []


def test_a_database_failure_deep_in_task_groups_is_explained() -> None:
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorname = "SQLITE_FULL"
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [ValueError(), full])])
    found = explained_failure(nested, Path("/s/db"))
    assert isinstance(found, StateError) and "the disk is full: free space" in found.problem
    bug = ExceptionGroup("x", [ValueError()])
    assert explained_failure(bug, Path("/s/db")) is bug


@pytest.mark.e2e
def test_status_and_run_on_a_damaged_database_print_one_line(
    tmp_path: Path, simulator: Simulator
) -> None:
    config = write_config(tmp_path, simulator)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "dropreel.sqlite3").write_bytes(b"\x00garbage" * 1000)
    for command in ("status", "run"):
        result = dropreel(command, "--config", str(config))
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1, result.stderr
        assert "is not a SQLite database" in result.stderr
        assert "Traceback" not in result.stdout + result.stderr


def fill(folder: Path) -> Path:
    """Take every free byte of the filesystem `folder` is on."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        for chunk in (b"\0" * 65536, b"\0" * 4096):
            try:
                while os.write(fd, chunk):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


@needs_root
@pytest.mark.e2e
def test_a_full_state_disk_stops_the_daemon_in_one_line_and_the_next_start_carries_on(
    tmp_path: Path, simulator: Simulator
) -> None:
    config = write_config(tmp_path, simulator)
    state, inbox, outbox = tmp_path / "state", tmp_path / "inbox", tmp_path / "outbox"
    with mounted(state, size="2m"):
        log = tmp_path / "daemon.log"
        with log.open("w") as out:
            daemon = start_daemon(config, out)
            try:
                drop_job(inbox, "before.txt", "first")
                wait_for(lambda: (outbox / "before.result.json").exists(), 30, "the first job")
                filler = fill(state)
                for n in range(5):
                    drop_job(inbox, f"during-{n}.txt", f"while full {n}")
                status = daemon.wait(timeout=60)
            finally:
                if daemon.poll() is None:
                    daemon.kill()
                    daemon.wait()
        output = log.read_text()
        assert status == 1
        assert "Traceback" not in output
        last = output.splitlines()[-1]
        assert last.startswith("dropreel: state database") and "the disk is full" in last

        filler.unlink()
        with log.open("w") as out:
            daemon = start_daemon(config, out)
            try:
                wait_for(
                    lambda: all((outbox / f"during-{n}.result.json").exists() for n in range(5)),
                    60,
                    "the jobs dropped while the disk was full",
                )
            finally:
                daemon.terminate()
                assert daemon.wait(timeout=30) == 0
    assert list(inbox.iterdir()) == []
    prompts = sorted(body["prompt"] for body, _ in simulator.enqueued)
    assert prompts == sorted(["first"] + [f"while full {n}" for n in range(5)]), "one POST each"
